#!/usr/bin/env python3
"""Holds what the functions do against what template.yaml grants them (run by `make test`).

Observed: while the integration suites run, the emulator (dev/scripts/emulator.py) writes one
JSON line per distinct AWS request: the caller (the access key id; the local stack gives each
function its own), the operation and the resource it names. The harness writes which physical
name stands for which template resource (its names carry per-test suffixes).

Granted: template.yaml translated offline to plain CloudFormation by the SAM translator (as
`sam validate` does), each function role's policies resolved to concrete ARNs for the default
names, account 123456789012 in us-east-1.

The operator tool, pnsctl, runs with a person's credentials; docs/iam/operator-policy.json is
the policy the docs give for them, and is held to the same rules as a role.

The check, with parliament for IAM semantics (action names, ARN globbing, policy lint):
  1. every observed (function, IAM action, resource) is allowed by that function's role, and
     every pnsctl call by the operator policy;
  2. every action a role or the operator policy grants is observed, or listed with a reason
     in dev/iam/reviewed.yaml;
  3. parliament finds nothing to say about the roles' policies nor the operator's.
It writes the report (function -> IAM action -> resources) and exits 1 on any finding.

Usage: iam_check.py --template T --observations O --resources R --reviewed V --report OUT
       iam_check.py --self-test ...   (the same inputs; shows the check catching a
                                       removed permission, a new call and an unused grant)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import sys
from dataclasses import dataclass, field

REGION = "us-east-1"
ACCOUNT = "123456789012"

# Callers (access key ids) that are the template's functions, and the operator tool.
FUNCTIONS = {
    "webhook": "WebhookFunction",
    "archiver": "ArchiverFunction",
    "reconciler": "ReconcilerFunction",
    "publisher": "PublisherFunction",
    "pretraffic": "PreTrafficHookFunction",
}
OPERATOR = "pnsctl"
# How the operator policy appears in findings and in dev/iam/reviewed.yaml.
OPERATOR_POLICY = "OperatorPolicy"

# Operations whose IAM action is not service:Operation.
IAM_ACTIONS = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "ListParts"): "s3:ListMultipartUploadParts",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("dynamodb", "BatchWriteItem"): "dynamodb:BatchWriteItem",
}


def iam_action(service: str, operation: str) -> str:
    import parliament

    action = IAM_ACTIONS.get((service, operation), f"{service}:{operation}")
    parliament.expand_action(action)  # raises on an action IAM does not know
    return action


# ------------------------------------------------------------------ the template


def translated(template_path: str) -> dict:
    """template.yaml as plain CloudFormation, translated offline by the SAM translator."""
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    from samcli.yamlhelper import yaml_parse
    from samtranslator.translator.transform import transform

    # The translator records usage metrics for the SAM service; offline there is nowhere to
    # publish them, and its warning about that is noise.
    logging.getLogger("samtranslator.metrics").setLevel(logging.ERROR)
    # Offline there is no feature-toggle service either; the defaults apply.
    logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)

    class NoManagedPolicyLookups:
        # Only SAM's own managed policies appear, by ARN: nothing to look up in IAM.
        def load(self) -> dict[str, str]:
            return {}

    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # Local code paths are not S3 URIs, which the translator wants (sam validate
            # substitutes them the same way).
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    defaults = {name: p.get("Default") for name, p in template["Parameters"].items()}
    return transform(template, defaults, NoManagedPolicyLookups())


class Resolver:
    """Ref, Fn::GetAtt, Fn::Sub, Fn::If and Fn::Join for the default parameters."""

    def __init__(self, template: dict) -> None:
        self.template = template
        self.params = {
            name: str(p.get("Default", "")) for name, p in template["Parameters"].items()
        }
        self.params.update(
            {
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::StackName": "pns-cdr",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NoValue": None,
            }
        )

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def ref(self, name: str):  # type: ignore[no-untyped-def]
        if name in self.params:
            return self.params[name]
        if name not in self.template["Resources"]:
            return name  # one the SAM transform adds (ServerlessDeploymentApplication)
        resource = self.template["Resources"][name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table":
            return self.value(props["TableName"])
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.value(props['QueueName'])}"
        if kind == "AWS::S3::Bucket":
            return self.value(props["BucketName"])
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if kind == "AWS::Events::EventBus":
            return self.value(props["Name"])
        return name

    def get_att(self, name: str, attribute: str):  # type: ignore[no-untyped-def]
        resource = self.template["Resources"][name]
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.value(props['TableName'])}"
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            # The label is the stream's creation time; any one stands for all here. Real labels
            # hold colons (…T00:48:05.899), which parliament's ARN matching splits on.
            table = self.value(props["TableName"])
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/label"
        if kind == "AWS::Events::EventBus" and attribute == "Arn":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{self.value(props['Name'])}"
        if kind == "AWS::SQS::Queue":
            queue = self.value(props["QueueName"])
            return {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}", "QueueName": queue}[
                attribute
            ]
        if kind in ("AWS::Lambda::Function", "AWS::Serverless::Function") and attribute == "Arn":
            function = self.value(props.get("FunctionName", name))
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.value(props['BucketName'])}"
        return f"{name}.{attribute}"

    def value(self, v):  # type: ignore[no-untyped-def]
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.value(then if self.condition(name) else otherwise)
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(self.value(p)) for p in parts)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Equals":
                a, b = (self.value(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
        return {k: self.value(x) for k, x in v.items()}

    def sub(self, arg):  # type: ignore[no-untyped-def]
        import re

        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def one(match: "re.Match[str]") -> str:
            name = match.group(1)
            if name in names:
                return str(self.value(names[name]))
            if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", one, text)


@dataclass
class Role:
    function: str
    statements: list[dict]
    managed: list[str]
    documents: list[dict] = field(default_factory=list)


def roles(cloudformation: dict, resolver: Resolver) -> dict[str, Role]:
    """Each function's role: its statements resolved to concrete ARNs, its managed policies."""
    found = {}
    for function in FUNCTIONS.values():
        role_ref = cloudformation["Resources"][function]["Properties"]["Role"]
        role_name = role_ref["Fn::GetAtt"][0]
        props = cloudformation["Resources"][role_name]["Properties"]
        documents = [resolver.value(p["PolicyDocument"]) for p in props.get("Policies", [])]
        statements = [s for d in documents for s in d["Statement"]]
        managed = [resolver.value(m) for m in props.get("ManagedPolicyArns", [])]
        found[function] = Role(function, statements, managed, documents)
    return found


def operator_role(path: str, resolver: Resolver) -> Role:
    """The operator policy, for the default names, account and region."""
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    document = resolver.value({"Fn::Sub": json.dumps(document)})
    document = json.loads(document)
    return Role(OPERATOR_POLICY, document["Statement"], [], [document])


def as_list(v) -> list:  # type: ignore[no-untyped-def]
    return v if isinstance(v, list) else [v]


def granted_actions(role: Role) -> set[str]:
    import parliament

    actions = set()
    for statement in role.statements:
        if statement.get("Effect") != "Allow":
            continue
        for pattern in as_list(statement["Action"]):
            for expanded in parliament.expand_action(pattern):
                actions.add(f"{expanded['service']}:{expanded['action']}")
    return actions


def allows(role: Role, action: str, arn: str) -> bool:
    import parliament

    kind = "bucket" if arn.startswith("arn:aws:s3:::") and "/" not in arn else "object"
    for statement in role.statements:
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            # A condition cannot be judged offline: such a grant proves nothing here.
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"])):
            continue
        if any(parliament.is_arn_match(kind, r, arn) for r in as_list(statement["Resource"])):
            return True
    return False


# ------------------------------------------------------------------ what was observed


@dataclass(frozen=True)
class Call:
    caller: str
    action: str
    arn: str


def physical_names(path: str) -> dict[tuple[str, str], str]:
    """(kind, physical name) -> logical id, as the harness registered them."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                names[(entry["kind"], entry["physical"])] = entry["logical"]
    return names


def observed_calls(path: str, names: dict, resolver: Resolver) -> tuple[set[Call], list[str]]:
    """The calls of the functions and the operator tool, their resources as template ARNs."""
    calls, unknown = set(), []
    with open(path, encoding="utf-8") as f:
        seen = [json.loads(line) for line in f if line.strip()]
    for o in seen:
        caller = o.get("caller")
        if caller not in FUNCTIONS and caller != OPERATOR:
            continue  # the harness itself: test set-up and verification
        action = iam_action(o["service"], o["operation"])
        arn = None
        if "rule" in o:
            logical = names.get(("bus", o["bus"]))
            bus = resolver.ref(logical) if logical else o["bus"]
            arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/{o['rule']}"
        elif "stream" in o and ("table", o["stream"]) in names:
            arn = resolver.get_att(names[("table", o["stream"])], "StreamArn")
        elif "bus" in o and ("bus", o["bus"]) in names:
            arn = resolver.get_att(names[("bus", o["bus"])], "Arn")
        elif "table" in o and ("table", o["table"]) in names:
            arn = resolver.get_att(names[("table", o["table"])], "Arn")
            if "index" in o:
                arn += f"/index/{o['index']}"
        elif "queue" in o and ("queue", o["queue"]) in names:
            arn = resolver.get_att(names[("queue", o["queue"])], "Arn")
        elif "bucket" in o and ("bucket", o["bucket"]) in names:
            arn = resolver.get_att(names[("bucket", o["bucket"])], "Arn")
            if "key" in o:
                arn += f"/{o['key']}"
        elif ("secret" in o or "secret_name" in o):
            secret = o.get("secret", o.get("secret_name", ""))
            logical = names.get(("secret", secret)) or next(
                (lid for (k, p), lid in names.items() if k == "secret" and secret.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{p}")),
                None,
            )
            if logical:
                arn = resolver.ref(logical)
        if arn is None and caller == OPERATOR:
            arn = operator_resource(o)
        if arn is None:
            unknown.append(json.dumps(o, sort_keys=True))
            continue
        calls.add(Call(caller, action, arn))
    return calls, unknown


def operator_resource(o: dict) -> str | None:
    """What the operator tool makes for a moment (`pnsctl smoke`'s queue)."""
    if "queue" in o and o["queue"].startswith("pns-smoke-"):
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{o['queue']}"
    return None


# ------------------------------------------------------------------ the check


def reviewed(path: str) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def check(
    role_by_function: dict[str, Role], calls: set[Call], unknown: list[str], review: dict
) -> list[str]:
    import parliament

    findings = [f"observed a call to a resource the template does not define: {u}" for u in unknown]
    who = {**FUNCTIONS, OPERATOR: OPERATOR_POLICY}
    for call in sorted(calls, key=lambda c: (c.caller, c.action, c.arn)):
        function = who.get(call.caller)
        if function is None:
            continue
        if not allows(role_by_function[function], call.action, call.arn):
            findings.append(f"{function} calls {call.action} on {call.arn}, which its role does not allow")
    for function, role in role_by_function.items():
        listed = review.get(function, {})
        used = {c.action for c in calls if who.get(c.caller) == function}
        for action in sorted(granted_actions(role)):
            if action not in used and action not in listed.get("actions", {}):
                findings.append(
                    f"{function}'s role grants {action}, which it was never seen to use and "
                    "dev/iam/reviewed.yaml does not list"
                )
        for arn in role.managed:
            if arn not in listed.get("managed_policies", {}):
                findings.append(f"{function}'s role has managed policy {arn}, not listed as reviewed")
        # Findings of parliament's own (dated) IAM database, each reviewed with its reason.
        known = {
            (k["issue"], k["action"])
            for k in review.get("parliament", [])
            if k["function"] == function
        }
        for document in role.documents:
            for finding in parliament.analyze_policy_string(json.dumps(document)).findings:
                actions = [d.get("action") for d in finding.detail if isinstance(d, dict)] if isinstance(finding.detail, list) else []
                if actions and all((finding.issue, a) in known for a in actions):
                    continue
                findings.append(f"{function}: parliament: {finding.issue} {finding.detail}")
    return findings


def report(calls: set[Call]) -> dict:
    out: dict = {}
    for call in calls:
        if call.caller in FUNCTIONS:
            who = FUNCTIONS[call.caller]
        elif call.caller == OPERATOR:
            who = f"{OPERATOR} (docs/iam/operator-policy.json)"
        else:
            continue  # the harness setting up and inspecting, not the product
        out.setdefault(who, {}).setdefault(call.action, set()).add(call.arn)
    return {
        who: {action: sorted(arns) for action, arns in sorted(actions.items())}
        for who, actions in sorted(out.items())
    }


def run(args: argparse.Namespace, mutate=None, extra_calls=()) -> list[str]:  # type: ignore[no-untyped-def]
    cloudformation = translated(args.template)
    if mutate:
        mutate(cloudformation)
    with open(args.template, encoding="utf-8") as f:
        from samcli.yamlhelper import yaml_parse

        resolver = Resolver(yaml_parse(f.read()))
    role_by_function = roles(cloudformation, resolver)
    role_by_function[OPERATOR_POLICY] = operator_role(args.operator_policy, resolver)
    names = physical_names(args.resources)
    calls, unknown = observed_calls(args.observations, names, resolver)
    calls |= set(extra_calls)
    findings = check(role_by_function, calls, unknown, reviewed(args.reviewed))
    if not mutate and not extra_calls and args.report:
        os.makedirs(os.path.dirname(args.report) or ".", exist_ok=True)
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report(calls), f, indent=2)
            f.write("\n")
    return findings


def self_test(args: argparse.Namespace) -> int:
    """The check catches a permission removed from the template, a call the role lacks and
    a grant nobody uses."""

    def statements(cf: dict, role: str) -> list[dict]:
        return cf["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]

    def without_abort(cf: dict) -> None:
        for s in statements(cf, "ArchiverFunctionRole"):
            actions = as_list(s["Action"])
            if "s3:AbortMultipartUpload" in actions:
                s["Action"] = [a for a in actions if a != "s3:AbortMultipartUpload"]

    def with_unused_grant(cf: dict) -> None:
        statements(cf, "WebhookFunctionRole").append(
            {"Effect": "Allow", "Action": "dynamodb:DeleteItem", "Resource": {"Fn::GetAtt": ["CallsTable", "Arn"]}}
        )

    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/pns-calls"
    cases = [
        ("a permission removed from the template", dict(mutate=without_abort),
         "ArchiverFunction calls s3:AbortMultipartUpload"),
        ("a call the role lacks", dict(extra_calls=[Call("webhook", "dynamodb:DeleteItem", table)]),
         "WebhookFunction calls dynamodb:DeleteItem"),
        ("a grant nobody uses", dict(mutate=with_unused_grant),
         "WebhookFunction's role grants dynamodb:DeleteItem"),
        ("an operator call the operator policy lacks",
         dict(extra_calls=[Call(OPERATOR, "dynamodb:DeleteTable", table)]),
         "OperatorPolicy calls dynamodb:DeleteTable"),
    ]
    failed = 0
    for what, change, expected in cases:
        findings = run(args, **change)
        caught = any(f.startswith(expected) for f in findings)
        print(f"self-test: {what}: {'caught' if caught else 'NOT CAUGHT'}")
        failed += not caught
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--observations", required=True)
    parser.add_argument("--resources", required=True)
    parser.add_argument("--reviewed", default="dev/iam/reviewed.yaml")
    parser.add_argument("--operator-policy", default="docs/iam/operator-policy.json")
    parser.add_argument("--report", default="target/iam/report.json")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args)
    findings = run(args)
    with open(args.report, encoding="utf-8") as f:
        observed = json.load(f)
    for who, actions in observed.items():
        print(f"{who}: " + ", ".join(f"{a} ({len(r)})" for a, r in actions.items()))
    for finding in findings:
        print(f"IAM: {finding}", file=sys.stderr)
    print(f"IAM check: {len(findings)} finding(s); report in {args.report}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
