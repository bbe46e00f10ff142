#!/usr/bin/env python3
"""Holds docs/iam/deployer-policy.json to what deploying template.yaml needs (offline, seconds).

Why: `sam deploy` and `sam delete` have CloudFormation act with the caller's own credentials
(the stack names no service role), so whoever deploys, a person or a CI role, needs the SAM
CLI's own calls and every permission CloudFormation needs to create, read, update and delete
each resource of the template. docs/iam/deployer-policy.json is that policy, for the default
names (stack `pns-cdr`, `resolve_s3`): this check keeps it complete and no larger.

Needed:
  - for each resource type of the template as CloudFormation sees it (template.yaml translated
    offline by the SAM translator, as iam_check.py does) and of the SAM CLI's managed artifact
    stack: the permissions its CloudFormation registry schema (the copy cfn-lint ships) lists
    for the create, read, update and delete handlers. A few listed names are API operations,
    not IAM actions; they count as the actions that authorise them (NOT_IAM_ACTIONS);
  - what the template's settings need that no handler lists (EXTRA), e.g. an HTTP API stage's
    access log;
  - the SAM CLI's own calls (SAM_CLI): the change sets, the SAM transform, its managed artifact
    stack and bucket, sam delete's look-ups; and preflight.py's lambda:GetAccountSettings.

The check:
  1. every resource type has a registry schema with handlers, or is in NO_SCHEMA with why;
  2. every needed action is allowed by an Allow statement (names compared case-insensitively,
     wildcards as IAM reads them);
  3. on the resources: each needed action is allowed on the ARNs the stack's resources will
     have (default parameters, stack pns-cdr, account 123456789012 in us-east-1, the names
     CloudFormation generates simulated), with the condition keys the request carries
     (iam:PassedToService, iam:PolicyARN, lambda:FunctionArn). parliament's IAM database says
     which resource types an action is authorised on; actions it does not know yet are held
     by name only (2.);
  4. least privilege: every action the policy grants is needed, or in GRANTED_ANYWAY with why;
  5. parliament's lint of the policy finds nothing that PARLIAMENT_REVIEWED does not explain.
It prints one line per finding and a summary, and exits 1 on any finding.

Usage: deployer_check.py --template template.yaml --policy docs/iam/deployer-policy.json
       deployer_check.py ... --self-test   (shows the check catching a removed action, an
                                           unneeded one, a role passed to a service it is not
                                           for, and a resource type without a schema)
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import functools
import json
import os
import re
import sys
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iam_check  # noqa: E402  (the offline translation and the intrinsic-function resolver)

REGION = iam_check.REGION
ACCOUNT = iam_check.ACCOUNT
STACK = "pns-cdr"  # samconfig.toml's stack_name; the policy is written for it
MANAGED_STACK = "aws-sam-cli-managed-default"  # the SAM CLI's artifact stack (resolve_s3)
TRANSFORM_ARN = f"arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"
HANDLERS = ("create", "read", "update", "delete")  # `list` is not called by stack operations

# Names the registry schemas list that are API operations, not IAM actions: the actions IAM
# authorises those operations with.
NOT_IAM_ACTIONS: dict[str, tuple[list[str], str]] = {
    "s3:deletebucketcors": (["s3:PutBucketCORS"], "DeleteBucketCors is authorised by s3:PutBucketCORS"),
    "s3:deletebucketencryption": (
        ["s3:PutEncryptionConfiguration"], "DeleteBucketEncryption is authorised by s3:PutEncryptionConfiguration"),
    "s3:deletebucketlifecycle": (
        ["s3:PutLifecycleConfiguration"], "DeleteBucketLifecycle is authorised by s3:PutLifecycleConfiguration"),
    "s3:deletebucketanalyticsconfiguration": (
        ["s3:PutAnalyticsConfiguration"], "authorised by s3:PutAnalyticsConfiguration"),
    "s3:deletebucketmetricsconfiguration": (
        ["s3:PutMetricsConfiguration"], "authorised by s3:PutMetricsConfiguration"),
    "s3:deletebucketreplication": (
        ["s3:PutReplicationConfiguration"], "authorised by s3:PutReplicationConfiguration"),
    "s3:putbucketreplication": (
        ["s3:PutReplicationConfiguration"], "the PutBucketReplication API is authorised by s3:PutReplicationConfiguration"),
    "s3:putobjectlockconfiguration": (
        ["s3:PutBucketObjectLockConfiguration"],
        "the PutObjectLockConfiguration API is authorised by s3:PutBucketObjectLockConfiguration"),
    "s3:getobjectmetadata": (["s3:GetObject"], "object metadata (HeadObject) is authorised by s3:GetObject"),
    "kms:reencrypt": (
        ["kms:ReEncryptFrom", "kms:ReEncryptTo"], "ReEncrypt is authorised by kms:ReEncryptFrom and kms:ReEncryptTo"),
    "s3:rest.put.object": (
        [], "an S3 server access log operation, not an IAM action (the log group handler lists it for "
            "log delivery to S3, which this stack does not use; logs:CreateLogDelivery is checked)"),
}

# Resource types without a registry schema (or without handlers) that need no permissions.
NO_SCHEMA: dict[str, str] = {
    "AWS::CloudFormation::WaitConditionHandle": "CloudFormation itself; no service is called",
}

# What a template setting needs that no registry handler lists: (type, the setting, actions, why).
EXTRA = [
    (
        "AWS::ApiGatewayV2::Stage",
        "AccessLogSettings",
        [
            "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
        ],
        "API Gateway sets up an HTTP API's access log with the caller's permissions "
        "(API Gateway developer guide, 'Configure logging for HTTP APIs')",
    ),
]

# Condition keys a request carries, and the actions whose requests carry them.
REQUEST_KEYS = {
    "iam:passedtoservice": {"iam:passrole"},
    "iam:policyarn": {"iam:attachrolepolicy", "iam:detachrolepolicy"},
    "lambda:functionarn": {
        "lambda:createeventsourcemapping", "lambda:updateeventsourcemapping",
        "lambda:deleteeventsourcemapping", "lambda:geteventsourcemapping",
    },
}

# Actions the policy may grant although nothing above needs them: action -> why.
GRANTED_ANYWAY: dict[str, str] = {}

# Handler permissions deliberately not granted on some of the stack's resources, though they
# are granted by name elsewhere: (type, action) -> why.
NOT_ON_THE_STACKS_RESOURCES = {
    ("AWS::S3::Bucket", "s3:deleteobject"):
        "The bucket handler lists it for creating a bucket, which is empty then. It is granted on "
        "the SAM CLI's artifacts only (sam delete needs it), so that whoever deploys cannot "
        "delete recordings; should a bucket's creation ever be refused it, grant it there.",
    ("AWS::S3::Bucket", "s3:putobjectacl"):
        "As s3:DeleteObject: listed for creating a (then empty) bucket; granted on the SAM "
        "CLI's artifacts only. The recording bucket enforces bucket-owner ownership (no ACLs).",
}

# parliament's own findings on the policy, reviewed: (issue, action or ARN) -> why.
PARLIAMENT_REVIEWED = {
    ("INVALID_ARN", TRANSFORM_ARN):
        "The SAM transform is a macro of AWS's own account, spelled `aws` in its ARN.",
    ("RESOURCE_MISMATCH", "lambda:TagResource"):
        "parliament's database predates tagging event source mappings.",
    ("RESOURCE_MISMATCH", "lambda:UntagResource"):
        "parliament's database predates tagging event source mappings.",
    ("RESOURCE_MISMATCH", "lambda:ListTags"):
        "parliament's database predates tagging event source mappings.",
    ("RESOURCE_MISMATCH", "events:CreateArchive"):
        "IAM authorises CreateArchive on both the archive and the bus; each has its statement.",
    ("RESOURCE_MISMATCH", "athena:TagResource"):
        "parliament wants every type tagging accepts (data catalogs, capacity reservations); "
        "the stack tags only its workgroup.",
    ("RESOURCE_MISMATCH", "athena:UntagResource"):
        "As athena:TagResource.",
    ("RESOURCE_MISMATCH", "athena:ListTagsForResource"):
        "As athena:TagResource.",
}


# ------------------------------------------------------------------ the policy


def as_list(v) -> list:  # type: ignore[no-untyped-def]
    return v if isinstance(v, list) else [v]


def read_policy(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolved(policy: dict, template: dict) -> dict:
    """The policy for the default names, account and region (its ${AWS::…} placeholders)."""
    resolver = iam_check.Resolver(template)
    return json.loads(resolver.value({"Fn::Sub": json.dumps(policy)}))


def action_allowed(policy: dict, action: str) -> bool:
    """Some Allow statement names the action (resources and conditions aside)."""
    return any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower())
        for s in policy["Statement"]
        if s.get("Effect") == "Allow"
        for pattern in as_list(s.get("Action", []))
    )


def condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """The operators the policy uses; a key the request does not carry fails, as in IAM."""
    for operator, tests in condition.items():
        for key, values in tests.items():
            have = context.get(key.lower())
            if have is None:
                return False
            values = [str(v) for v in as_list(values)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = have in values
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(have, v) for v in values)
            else:
                return False  # not judged offline: such a grant proves nothing here
            if not ok:
                return False
    return True


def allowed_on(policy: dict, action: str, arn: str, context: dict[str, str]) -> bool:
    context = {k: v for k, v in context.items() if action.lower() in REQUEST_KEYS.get(k, ())}
    for s in policy["Statement"]:
        if s.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in as_list(s["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(arn, r) for r in as_list(s["Resource"])):
            continue
        if condition_holds(s.get("Condition", {}), context):
            return True
    return False


def granted_actions(policy: dict) -> set[str]:
    """Every action an Allow statement grants, lower case; wildcards expanded by parliament."""
    import parliament

    actions = set()
    for s in policy["Statement"]:
        if s.get("Effect") != "Allow":
            continue
        for pattern in as_list(s.get("Action", [])):
            if "*" in pattern or "?" in pattern:
                expanded = parliament.expand_action(pattern, raise_exceptions=False)
                actions |= {f"{e['service']}:{e['action']}".lower() for e in expanded}
                actions.add(pattern.lower())  # what parliament's dated list cannot expand
            else:
                actions.add(pattern.lower())
    return actions


# ------------------------------------------------------------------ the template


@functools.lru_cache(maxsize=4)
def _translated(template_path: str) -> str:
    return json.dumps(iam_check.translated(template_path))


def translated(template_path: str) -> dict:
    return json.loads(_translated(template_path))


def managed_stack_template() -> dict:
    """The SAM CLI's own artifact stack (its bucket and bucket policy), as `sam deploy`
    creates it once per account and region; without touching the SAM CLI's config."""
    from unittest import mock

    from samcli.lib.bootstrap import bootstrap

    with mock.patch.object(bootstrap, "GlobalConfig") as config:
        config.return_value.installation_id = "offline"
        return json.loads(bootstrap._get_stack_template())


def sam_cli_side_stacks(stack: str) -> list[str]:
    """The stacks `sam delete` looks for beside the deployed one (ECR images, Web Functions)."""
    from samcli.lib.bootstrap.companion_stack.data_types import CompanionStack
    from samcli.lib.bootstrap.web_function_code_bucket import WebFunctionCodeBucketStack

    return [CompanionStack(stack).stack_name, WebFunctionCodeBucketStack(stack).stack_name]


@functools.lru_cache(maxsize=1)
def registry() -> tuple[str, dict[str, str]]:
    """cfn-lint's copy of the CloudFormation registry: type -> schema file (us-east-1)."""
    import cfnlint

    base = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas")
    with open(os.path.join(base, "providers", "us-east-1.json"), encoding="utf-8") as f:
        providers = json.load(f)
    return base, providers


@functools.lru_cache(maxsize=None)
def handler_permissions(kind: str) -> dict[str, list[str]] | None:
    """handler -> the permissions its schema lists, or None without a schema or handlers."""
    base, providers = registry()
    digest = providers.get(kind)
    if digest is None:
        return None
    path = os.path.join(base, "resources", f"{digest}.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        handlers = json.load(f).get("handlers")
    if not handlers:
        return None
    return {h: handlers.get(h, {}).get("permissions", []) for h in HANDLERS}


def iam_actions(permission: str) -> list[str]:
    """A handler's permission as the IAM actions that authorise it."""
    mapped = NOT_IAM_ACTIONS.get(permission.lower())
    return mapped[0] if mapped else [permission]


def has_setting(resource: dict, path: str) -> bool:
    v = resource.get("Properties", {})
    for part in path.split("."):
        if not isinstance(v, dict) or part not in v:
            return False
        v = v[part]
    return True


# ------------------------------------------------------------------ resource names and ARNs

# Settings that stand in for empty parameters that name things (the optional custom domain).
STAND_INS = {
    "DomainName": "api.example.com",
    "CertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0a1b2c3d-0000-4000-8000-000000000000",
    "AlarmEmail": "ops@example.com",
}
NAME_PROPERTY = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Events::Archive": "ArchiveName",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
    "AWS::Glue::Database": "DatabaseInput.Name",
    "AWS::Glue::Table": "TableInput.Name",
    "AWS::Athena::WorkGroup": "Name",
    "AWS::CodeDeploy::Application": "ApplicationName",
    "AWS::CodeDeploy::DeploymentGroup": "DeploymentGroupName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::ApiGatewayV2::DomainName": "DomainName",
    "AWS::ApiGatewayV2::Stage": "StageName",
    "AWS::Logs::LogStream": "LogStreamName",
}
SUFFIX = "A1B2C3D4E5F6"  # CloudFormation's random part of a generated name


@dataclass
class Target:
    arn: str
    context: dict[str, str] = field(default_factory=dict)


class Names(iam_check.Resolver):
    """Physical names and ARNs of a (translated) template's resources, for the default
    parameters; generated names as CloudFormation makes them."""

    def __init__(self, template: dict, stack: str) -> None:
        template.setdefault("Parameters", {})
        template.setdefault("Conditions", {})
        super().__init__(template)
        self.stack = stack
        self.params["AWS::StackName"] = stack
        for name, value in STAND_INS.items():
            if name in self.params and not self.params[name]:
                self.params[name] = value
        self.resources = template["Resources"]

    def name(self, logical: str) -> str:
        resource = self.resources[logical]
        kind, props = resource["Type"], resource.get("Properties", {})
        v = props
        for part in NAME_PROPERTY.get(kind, "\0").split("."):
            v = v.get(part) if isinstance(v, dict) else None
        if v not in (None, ""):
            return str(self.value(v))
        if kind == "AWS::S3::Bucket":
            return f"{self.stack}-{logical}-{SUFFIX}".lower()[:63]
        if kind == "AWS::SecretsManager::Secret":
            return f"{logical}-{SUFFIX}"
        if kind == "AWS::KMS::Key":
            return "0a1b2c3d-1111-4222-8333-444455556666"
        if kind == "AWS::ApiGatewayV2::Api":
            return "a1b2c3d4e5"
        if kind == "AWS::Lambda::EventSourceMapping":
            return "0a1b2c3d-aaaa-4bbb-8ccc-ddddeeeeffff"
        return f"{self.stack}-{logical}-{SUFFIX}"[:64]

    def arn(self, logical: str) -> str:
        kind = self.resources[logical]["Type"]
        props = self.resources[logical].get("Properties", {})
        n = self.name(logical)
        rp = f"{REGION}:{ACCOUNT}"
        if kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{rp}:function:{n}"
        if kind == "AWS::Lambda::Alias":
            return f"{self.function_arn(props['FunctionName'])}:{self.value(props['Name'])}"
        if kind == "AWS::Lambda::Version":
            return f"{self.function_arn(props['FunctionName'])}:1"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{n}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{rp}:{n}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{rp}:{n}"
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{rp}:table/{n}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{n}"
        if kind == "AWS::KMS::Key":
            return f"arn:aws:kms:{rp}:key/{n}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{rp}:secret:{n}-AbCdEf"
        if kind == "AWS::Events::EventBus":
            return f"arn:aws:events:{rp}:event-bus/{n}"
        if kind == "AWS::Events::Rule":
            bus = props.get("EventBusName")
            bus = self.value(bus) if bus is not None else "default"
            return f"arn:aws:events:{rp}:rule/{n}" if bus == "default" else f"arn:aws:events:{rp}:rule/{bus}/{n}"
        if kind == "AWS::Events::Archive":
            return f"arn:aws:events:{rp}:archive/{n}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{rp}:log-group:{n}"
        if kind == "AWS::KinesisFirehose::DeliveryStream":
            return f"arn:aws:firehose:{rp}:deliverystream/{n}"
        if kind == "AWS::CloudWatch::Alarm":
            return f"arn:aws:cloudwatch:{rp}:alarm:{n}"
        if kind == "AWS::CloudWatch::Dashboard":
            return f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{n}"
        if kind == "AWS::CodeDeploy::Application":
            return f"arn:aws:codedeploy:{rp}:application:{n}"
        if kind == "AWS::CodeDeploy::DeploymentGroup":
            return f"arn:aws:codedeploy:{rp}:deploymentgroup:{self.value(props['ApplicationName'])}/{n}"
        if kind == "AWS::Athena::WorkGroup":
            return f"arn:aws:athena:{rp}:workgroup/{n}"
        if kind == "AWS::Glue::Database":
            return f"arn:aws:glue:{rp}:database/{n}"
        if kind == "AWS::ApiGatewayV2::Api":
            return f"arn:aws:apigateway:{REGION}::/apis/{n}"
        if kind == "AWS::ApiGatewayV2::DomainName":
            return f"arn:aws:apigateway:{REGION}::/domainnames/{n}"
        return f"{logical}.Arn"

    def function_arn(self, value) -> str:  # type: ignore[no-untyped-def]
        """A FunctionName property (a name, or a function's, version's or alias's ARN) as an ARN."""
        value = str(self.value(value))
        return value if value.startswith("arn:") else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{value}"

    def ref(self, name: str):  # type: ignore[no-untyped-def]
        if name in self.params:
            return self.params[name]
        if name not in self.resources:
            return name
        kind = self.resources[name]["Type"]
        if kind in (
            "AWS::SNS::Topic", "AWS::SecretsManager::Secret", "AWS::Lambda::Alias",
            "AWS::Lambda::Version",
        ):
            return self.arn(name)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(name)}"
        return self.name(name)

    def get_att(self, name: str, attribute: str):  # type: ignore[no-untyped-def]
        if name not in self.resources:
            return f"{name}.{attribute}"
        kind = self.resources[name]["Type"]
        if attribute == "Arn":
            return self.arn(name)
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return f"{self.arn(name)}/stream/2024-01-01T00.00.00.000"
        if kind == "AWS::Lambda::Version" and attribute == "Version":
            return "1"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return self.name(name)
        return f"{name}.{attribute}"

    def targets(self, logical: str) -> list[Target]:
        """The ARNs a stack operation on this resource is authorised on, with the condition
        keys each request carries."""
        resource = self.resources[logical]
        kind, props = resource["Type"], resource.get("Properties", {})
        rp = f"{REGION}:{ACCOUNT}"
        v = self.value
        out: list[Target] = []

        def role(arn_value, service: str) -> None:  # type: ignore[no-untyped-def]
            out.append(Target(str(v(arn_value)), {"iam:passedtoservice": service}))

        if kind == "AWS::Lambda::Function":
            out.append(Target(self.arn(logical)))
            role(props["Role"], "lambda.amazonaws.com")
            code = props.get("Code", {})
            if "S3Key" in code:
                out.append(Target(f"arn:aws:s3:::{SAM_BUCKET}/{STACK}/{SUFFIX.lower()}"))
        elif kind in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
            out += [Target(self.function_arn(props["FunctionName"])), Target(self.arn(logical))]
            deploy = resource.get("UpdatePolicy", {}).get("CodeDeployLambdaAliasUpdate")
            if deploy:
                app = v(deploy["ApplicationName"])
                group = deploy["DeploymentGroupName"]["Ref"]
                config = v(self.resources[group]["Properties"].get("DeploymentConfigName", "CodeDeployDefault.LambdaAllAtOnce"))
                out += [
                    Target(f"arn:aws:codedeploy:{rp}:application:{app}"),
                    Target(self.arn(group)),
                    Target(f"arn:aws:codedeploy:{rp}:deploymentconfig:{config}"),
                ]
        elif kind == "AWS::Lambda::Permission":
            function = self.function_arn(props["FunctionName"])
            out += [Target(function), Target(":".join(function.split(":")[:7]))]
        elif kind == "AWS::Lambda::EventSourceMapping":
            function = self.function_arn(props["FunctionName"])
            context = {"lambda:functionarn": function}
            out += [
                Target(f"arn:aws:lambda:{rp}:event-source-mapping:{self.name(logical)}", context),
                Target(":".join(function.split(":")[:7]), context),
            ]
        elif kind == "AWS::IAM::Role":
            out.append(Target(self.arn(logical)))
            for policy in props.get("ManagedPolicyArns", []):
                out.append(Target(self.arn(logical), {"iam:policyarn": str(v(policy))}))
        elif kind == "AWS::DynamoDB::Table":
            table = self.arn(logical)
            out += [Target(table), Target(f"{table}/stream/2024-01-01T00.00.00.000"),
                    Target(f"{table}/import/01234567890123-abcdef01")]
            out += [Target(f"{table}/index/{v(i['IndexName'])}") for i in props.get("GlobalSecondaryIndexes", [])]
        elif kind == "AWS::S3::Bucket":
            out += [Target(self.arn(logical)), Target(f"{self.arn(logical)}/key")]
        elif kind == "AWS::S3::BucketPolicy":
            out.append(Target(f"arn:aws:s3:::{v(props['Bucket'])}"))
        elif kind == "AWS::SQS::QueuePolicy":
            for queue in props.get("Queues", []):
                out.append(Target(f"arn:aws:sqs:{rp}:{str(v(queue)).rsplit('/', 1)[-1]}"))
        elif kind == "AWS::SNS::Subscription":
            out.append(Target(str(v(props["TopicArn"]))))
        elif kind == "AWS::Events::Rule":
            out.append(Target(self.arn(logical)))
            for target in props.get("Targets", []):
                if "RoleArn" in target:
                    role(target["RoleArn"], "events.amazonaws.com")
        elif kind == "AWS::Events::Archive":
            out += [Target(self.arn(logical)), Target(str(v(props["SourceArn"])))]
        elif kind == "AWS::KinesisFirehose::DeliveryStream":
            out.append(Target(self.arn(logical)))
            for arn in sorted({str(v(r)) for r in find_keys(props, "RoleARN")}):
                role(arn, "firehose.amazonaws.com")
        elif kind == "AWS::CodeDeploy::DeploymentGroup":
            app = v(props["ApplicationName"])
            out += [Target(self.arn(logical)), Target(f"arn:aws:codedeploy:{rp}:application:{app}")]
            if "DeploymentConfigName" in props:
                out.append(Target(f"arn:aws:codedeploy:{rp}:deploymentconfig:{v(props['DeploymentConfigName'])}"))
            if "ServiceRoleArn" in props:
                role(props["ServiceRoleArn"], "codedeploy.amazonaws.com")
        elif kind == "AWS::Glue::Database":
            out += [Target(f"arn:aws:glue:{rp}:catalog"), Target(self.arn(logical))]
        elif kind == "AWS::Glue::Table":
            database = v(props["DatabaseName"])
            out += [Target(f"arn:aws:glue:{rp}:catalog"), Target(f"arn:aws:glue:{rp}:database/{database}"),
                    Target(f"arn:aws:glue:{rp}:table/{database}/{self.name(logical)}")]
        elif kind == "AWS::Athena::WorkGroup":
            out.append(Target(self.arn(logical)))
            location = props.get("WorkGroupConfiguration", {}).get("ResultConfiguration", {}).get("OutputLocation")
            if location:
                bucket, _, prefix = str(v(location)).removeprefix("s3://").partition("/")
                out += [Target(f"arn:aws:s3:::{bucket}"), Target(f"arn:aws:s3:::{bucket}/{prefix}result.csv")]
        elif kind == "AWS::Athena::NamedQuery":
            out.append(Target(f"arn:aws:athena:{rp}:workgroup/{v(props.get('WorkGroup', 'primary'))}"))
        elif kind == "AWS::Logs::LogStream":
            group = v(props["LogGroupName"])
            out += [Target(f"arn:aws:logs:{rp}:log-group:{group}"),
                    Target(f"arn:aws:logs:{rp}:log-group:{group}:log-stream:{self.name(logical)}")]
        elif kind == "AWS::Logs::MetricFilter":
            out.append(Target(f"arn:aws:logs:{rp}:log-group:{v(props['LogGroupName'])}"))
        elif kind == "AWS::ApiGatewayV2::Api":
            out += [Target(f"arn:aws:apigateway:{REGION}::/apis"), Target(self.arn(logical))]
        elif kind == "AWS::ApiGatewayV2::Stage":
            out.append(Target(f"arn:aws:apigateway:{REGION}::/apis/{v(props['ApiId'])}/stages/{self.name(logical)}"))
        elif kind == "AWS::ApiGatewayV2::DomainName":
            out += [Target(f"arn:aws:apigateway:{REGION}::/domainnames"), Target(self.arn(logical))]
        elif kind == "AWS::ApiGatewayV2::ApiMapping":
            out.append(Target(f"arn:aws:apigateway:{REGION}::/domainnames/{v(props['DomainName'])}/apimappings/abc123"))
        else:
            out.append(Target(self.arn(logical)))
        return out


def find_keys(v, key: str) -> list:  # type: ignore[no-untyped-def]
    if isinstance(v, dict):
        return [x for k, x in v.items() if k == key] + [y for x in v.values() for y in find_keys(x, key)]
    if isinstance(v, list):
        return [y for x in v for y in find_keys(x, key)]
    return []


SAM_BUCKET = f"{MANAGED_STACK}-samclisourcebucket-{SUFFIX.lower()}"


# ------------------------------------------------------------------ parliament's IAM database


@functools.lru_cache(maxsize=None)
def privilege(action: str) -> dict | None:
    """parliament's entry for an action: its resource types' ARN patterns, or None if its
    (dated) database does not know the action."""
    import parliament

    service, name = action.lower().split(":", 1)
    for s in parliament.iam_definition:
        if s["prefix"] != service:
            continue
        for p in s["privileges"]:
            if p["privilege"].lower() == name:
                formats = {}
                for rt in p["resource_types"]:
                    kind = rt["resource_type"].rstrip("*")
                    if not kind:
                        continue
                    formats[kind] = [arn_regex(r["arn"]) for r in s["resources"] if r["resource"] == kind]
                return formats
    return None


def arn_regex(arn_format: str) -> "re.Pattern[str]":
    out, pos = "", 0
    for m in re.finditer(r"\$\{([^}]+)\}", arn_format):
        out += re.escape(arn_format[pos:m.start()])
        var = m.group(1)
        if var == "Partition":
            out += "aws"
        elif var in ("Region", "Account"):
            out += "[^:]*"
        elif var == "ObjectName":
            out += ".+"
        elif "Path" in var or var in ("LogGroupName", "LogStreamName"):
            out += "[^:]+"
        else:
            out += "[^:/]+"
        pos = m.end()
    return re.compile(out + re.escape(arn_format[pos:]) + "$")


# ------------------------------------------------------------------ what deploying needs


@dataclass
class Needs:
    # (type, handler or setting, IAM action) for every resource type
    by_type: list[tuple[str, str, str]] = field(default_factory=list)
    # (logical id, type, handler, IAM action, targets)
    by_resource: list[tuple[str, str, str, str, list[Target]]] = field(default_factory=list)
    # (action, arn, context, why): the SAM CLI's own calls
    fixed: list[tuple[str, str, dict, str]] = field(default_factory=list)
    no_schema: list[str] = field(default_factory=list)
    types: set[str] = field(default_factory=set)

    def actions(self) -> set[str]:
        return {a.lower() for _, _, a in self.by_type} | {a.lower() for a, _, _, _ in self.fixed}


def sam_cli_calls() -> list[tuple[str, str, dict, str]]:
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0a1b2c3d-0000-4000-8000-000000000000"
    managed = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{MANAGED_STACK}/0a1b2c3d-0000-4000-8000-000000000001"
    artifact = f"arn:aws:s3:::{SAM_BUCKET}/{STACK}/0123456789abcdef0123456789abcdef"
    calls = [(a, stack, {}, "sam deploy") for a in (
        "cloudformation:DescribeStacks", "cloudformation:GetTemplateSummary",
        "cloudformation:CreateChangeSet", "cloudformation:DescribeChangeSet",
        "cloudformation:ExecuteChangeSet", "cloudformation:DescribeStackEvents")]
    calls += [(a, stack, {}, "sam delete") for a in (
        "cloudformation:GetTemplate", "cloudformation:ListChangeSets", "cloudformation:DeleteStack")]
    calls.append(("cloudformation:CreateChangeSet", TRANSFORM_ARN, {}, "the template's SAM transform"))
    calls += [(a, managed, {}, "sam deploy creates its artifact stack (resolve_s3)") for a in (
        "cloudformation:DescribeStacks", "cloudformation:CreateChangeSet",
        "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet")]
    for side in sam_cli_side_stacks(STACK):
        calls.append(("cloudformation:DescribeStacks",
                      f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{side}/*", {},
                      "sam delete looks for its companion stacks and fails if it may not"))
    calls += [
        ("s3:PutObject", artifact, {}, "sam deploy uploads the code and the template"),
        ("s3:GetObject", artifact, {}, "sam deploy's HeadObject, CloudFormation's TemplateURL, Lambda's code"),
        ("s3:DeleteObject", artifact, {}, "sam delete removes the artifacts"),
        ("s3:ListBucket", f"arn:aws:s3:::{SAM_BUCKET}", {}, "sam delete lists the artifacts' prefix (s3_prefix)"),
        ("lambda:GetAccountSettings", "*", {}, "dev/scripts/preflight.py (make deploy)"),
        ("cloudformation:ListStackResources", stack, {},
         "dev/scripts/preflight.py counts what the deployed stack's functions reserve"),
        ("lambda:GetFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-ArchiverFunction-{SUFFIX}",
         {}, "dev/scripts/preflight.py reads a deployed function's reserved concurrency"),
    ]
    return calls


def needs(cloudformation: dict) -> Needs:
    found = Needs(fixed=sam_cli_calls())
    stacks = [(STACK, cloudformation), (MANAGED_STACK, managed_stack_template())]
    for stack, template in stacks:
        names = Names(template, stack)
        for logical, resource in template["Resources"].items():
            kind = resource["Type"]
            found.types.add(kind)
            permissions = handler_permissions(kind)
            if permissions is None:
                if kind not in NO_SCHEMA and kind not in found.no_schema:
                    found.no_schema.append(kind)
                continue
            wanted = [(h, a) for h in HANDLERS for p in permissions[h] for a in iam_actions(p)]
            for kind_, setting, actions, _ in EXTRA:
                if kind_ == kind and has_setting(resource, setting):
                    wanted += [(setting, a) for a in actions]
            targets = names.targets(logical)
            for handler, action in wanted:
                found.by_type.append((kind, handler, action))
                found.by_resource.append((logical, kind, handler, action, targets))
    found.by_type = sorted(set(found.by_type))
    return found


# ------------------------------------------------------------------ the check


def check(policy: dict, need: Needs) -> tuple[list[str], dict]:
    import parliament

    findings = [
        f"{kind} has no registry schema with handlers in cfn-lint's data: its permissions "
        "cannot be checked (add it to NO_SCHEMA with why, or write them out)"
        for kind in need.no_schema
    ]
    # 2. every needed action, by name
    missing = set()
    for kind, handler, action in need.by_type:
        if not action_allowed(policy, action) and (kind, action.lower()) not in missing:
            missing.add((kind, action.lower()))
            findings.append(f"{kind} {handler}: {action} is not allowed by the policy")
    for action, arn, context, why in need.fixed:
        if not allowed_on(policy, action, arn, context):
            findings.append(f"SAM CLI ({why}): {action} on {arn} is not allowed by the policy")
    # 3. on the resources
    judged, unknown, seen = 0, set(), set()
    for logical, kind, handler, action, targets in need.by_resource:
        if (kind, action.lower()) in missing or (kind, action.lower()) in NOT_ON_THE_STACKS_RESOURCES:
            continue  # reported by name already, or reviewed
        formats = privilege(action)
        if formats is None:
            unknown.add(action.lower())
            continue
        if not formats:  # no resource-level permissions: the policy must grant it on "*"
            contexts = [t.context for t in targets if action.lower() in
                        {a for k in t.context for a in REQUEST_KEYS.get(k, ())}] or [{}]
            checks = [("*", c) for c in contexts]
        else:
            keys = {k for k, acts in REQUEST_KEYS.items() if action.lower() in acts}
            checks = [
                (t.arn, t.context) for t in targets
                if any(r.match(t.arn) for patterns in formats.values() for r in patterns)
                and keys <= set(t.context)
            ]
        for arn, context in checks:
            judged += 1
            key = (action.lower(), arn, tuple(sorted(context.items())))
            if key in seen:
                continue
            seen.add(key)
            if not allowed_on(policy, action, arn, context):
                detail = f" ({', '.join(f'{k}={v}' for k, v in context.items())})" if context else ""
                findings.append(f"{logical} ({kind}) {handler}: {action} on {arn}{detail} is not allowed by the policy")
    # 4. least privilege
    needed = need.actions() | {a.lower() for a in GRANTED_ANYWAY}
    for action in sorted(granted_actions(policy)):
        if action in NOT_IAM_ACTIONS:
            findings.append(f"the policy grants {action}, which is not an IAM action: {NOT_IAM_ACTIONS[action][1]}")
        elif action not in needed:
            findings.append(
                f"the policy grants {action}, which no handler of the template's resource types, "
                "no template setting and no SAM CLI call needs"
            )
    # 5. parliament's lint
    for finding in parliament.analyze_policy_string(json.dumps(policy)).findings:
        if finding.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX"):
            # Its database is older than the registry schemas; 4. holds every name to them.
            continue
        location = getattr(finding, "location", {}) or {}
        details = finding.detail if isinstance(finding.detail, list) else [finding.detail]
        subjects = [d.get("action") for d in details if isinstance(d, dict) and d.get("action")]
        subjects = subjects or [location.get("string", "")]
        if all((finding.issue, s) in PARLIAMENT_REVIEWED for s in subjects):
            continue
        findings.append(f"parliament: {finding.issue} {finding.detail} {location.get('string', '')}".rstrip())
    # the statements' explanations
    sids = [s.get("Sid", "") for s in policy["Statement"]]
    for i, sid in enumerate(sids):
        if not sid:
            findings.append(f"statement {i + 1} has no Sid saying what it is for")
        elif sids.count(sid) > 1 and sids.index(sid) == i:
            findings.append(f"Sid {sid} names more than one statement")
    stats = {
        "types": len(need.types),
        "needed": len(need.actions()),
        "granted": len(granted_actions(policy)),
        "judged": judged,
        "unknown": len(unknown),
        "statements": len(policy["Statement"]),
    }
    return findings, stats


def run(args: argparse.Namespace, policy_change=None, template_change=None) -> tuple[list[str], dict]:  # type: ignore[no-untyped-def]
    import logging

    # The SAM CLI's modules log their imports' warnings; none concerns an offline read.
    logging.getLogger("samcli").setLevel(logging.ERROR)
    cloudformation = translated(args.template)
    if template_change:
        template_change(cloudformation)
    policy = read_policy(args.policy)
    if policy_change:
        policy = copy.deepcopy(policy)
        policy_change(policy)
    policy = resolved(policy, translated(args.template))
    return check(policy, needs(cloudformation))


# Characters, whitespace aside (an inline policy of an IAM Identity Center permission set
# takes 32768; an IAM role's inline policies 10240 together).
MANAGED_POLICY_LIMIT = 6144


def policy_size(path: str) -> tuple[int, int]:
    """Characters IAM counts (whitespace aside) for the default account and region, and how
    many managed policies it takes split by statement."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = text.replace("${AWS::Region}", REGION).replace("${AWS::AccountId}", ACCOUNT)
    wrapper = len('{"Version":"2012-10-17","Statement":[]}')
    sizes = sorted((len(json.dumps(s, separators=(",", ":"))) + 1 for s in json.loads(text)["Statement"]), reverse=True)
    bins: list[int] = []
    for size in sizes:  # first fit, largest first
        for i, used in enumerate(bins):
            if used + size <= MANAGED_POLICY_LIMIT:
                bins[i] += size
                break
        else:
            bins.append(wrapper + size)
    return len(re.sub(r"\s", "", text)), len(bins)


def self_test(args: argparse.Namespace) -> int:
    """The check catches a needed action removed, an unneeded one added, a role passed to a
    service it is not for, and a resource type without a schema."""

    def statement(policy: dict, sid: str) -> dict:
        return next(s for s in policy["Statement"] if s["Sid"] == sid)

    def without(action: str):  # type: ignore[no-untyped-def]
        def change(policy: dict) -> None:
            for s in policy["Statement"]:
                s["Action"] = [a for a in as_list(s["Action"]) if a.lower() != action.lower()] or ["sts:GetCallerIdentity"]
        return change

    def with_unneeded(policy: dict) -> None:
        policy["Statement"].append(
            {"Sid": "Unneeded", "Effect": "Allow", "Action": "dynamodb:DeleteBackup",
             "Resource": "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/pns-calls/backup/*"})

    def pass_only_to_lambda(policy: dict) -> None:
        s = statement(policy, "PassTheStacksRolesOnlyToTheirServices")
        s["Condition"] = {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}

    def with_unknown_type(cf: dict) -> None:
        cf["Resources"]["Widget"] = {"Type": "AWS::NoSuchService::Widget", "Properties": {}}

    cases = [
        ("a needed action removed (the functions' reserved concurrency)",
         dict(policy_change=without("lambda:PutFunctionConcurrency")),
         "AWS::Lambda::Function create: lambda:PutFunctionConcurrency"),
        ("an unneeded action added", dict(policy_change=with_unneeded),
         "the policy grants dynamodb:deletebackup"),
        ("a role passed only to Lambda (the lake's roles are for EventBridge and Firehose)",
         dict(policy_change=pass_only_to_lambda),
         "LakeRule (AWS::Events::Rule) create: iam:PassRole on arn:aws:iam::"),
        ("a resource type without a schema", dict(template_change=with_unknown_type),
         "AWS::NoSuchService::Widget has no registry schema"),
    ]
    baseline, _ = run(args)
    failed = 0
    for what, change, expected in cases:
        findings, _ = run(args, **change)
        caught = any(f.startswith(expected) for f in findings) and not any(
            f.startswith(expected) for f in baseline)
        shown = next((f for f in findings if f.startswith(expected)), "")
        print(f"self-test: {what}: {'caught' if caught else 'NOT CAUGHT'}" + (f": {shown}" if caught else ""))
        failed += not caught
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--policy", default="docs/iam/deployer-policy.json")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args)
    findings, stats = run(args)
    for finding in findings:
        print(f"deployer policy: {finding}")
    size, parts = policy_size(args.policy)
    print(
        f"Deployer policy check: {len(findings)} finding(s); {stats['types']} resource types, "
        f"{stats['needed']} actions needed, {stats['granted']} granted in {stats['statements']} "
        f"statements; {stats['judged']} (action, resource) pairs held to the statements' resources "
        f"({stats['unknown']} newer actions by name only); {size} characters: "
        + ("fits one managed policy" if parts == 1 else
           f"{parts} managed policies of at most {MANAGED_POLICY_LIMIT} split by statement, "
           "or one inline policy of an IAM Identity Center permission set")
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
