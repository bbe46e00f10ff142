#!/usr/bin/env python3
"""Checks, before `make deploy` builds, that AWS will take the deploy (run by `make deploy`).

Why: `sam build` takes minutes, and `sam deploy` fails late, half-way through creating the
stack, on things that can be told in a second: credentials that do not resolve or have expired,
no region, or an account whose Lambda concurrency cannot spare what the template reserves
(Lambda refuses a reservation that would leave fewer than 100 unreserved, and new accounts may
have a quota of 10).

With boto3 and your usual AWS configuration (AWS_PROFILE or the environment, or the profile and
region samconfig.toml names, as `sam deploy` reads them), it checks:
  1. the credentials resolve (sts:GetCallerIdentity): prints the account and the caller's ARN;
  2. a region is configured: prints it and where it comes from (--region, samconfig.toml,
     AWS_DEFAULT_REGION or the profile; like boto3, the SAM CLI does not read AWS_REGION);
  3. Lambda concurrency (lambda:GetAccountSettings): the account's unreserved concurrency, plus
     what the deployed stack's functions already reserve (an update moves those, it does not
     add them), is at least what the template's functions reserve plus AWS's floor of 100.
     What a function reserves is its ReservedConcurrentExecutions, a number or a parameter:
     the parameter's Default, overridden by samconfig.toml's parameter_overrides
     ([<env>.deploy.parameters]) and then by --parameter-overrides.
Each failure is one line saying what to set or do; it exits 1 on any failure, 0 with a short
summary otherwise. The calls it makes are in docs/iam/deployer-policy.json.

Usage: preflight.py [--template template.yaml] [--config-file samconfig.toml]
                    [--config-env default] [--profile P] [--region R] [--stack-name S]
                    [--parameter-overrides Key=Value ...]
       preflight.py --self-test   (the checks against moto's in-process mock, offline: AWS's
                                   defaults, a quota of 10, overrides from samconfig.toml and
                                   the command line, an update of a deployed stack, no region)
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import shlex
import sys
import tomllib

FLOOR = 100  # Lambda keeps at least this much of the account's concurrency unreserved
QUOTA_CODE = "L-B99A9384"  # Service Quotas: AWS Lambda, "Concurrent executions"


def fail(message: str) -> str:
    return f"preflight: {message}"


# ------------------------------------------------------------------ configuration


def samconfig(path: str, env: str) -> dict:
    """The deploy parameters of samconfig.toml, over its global ones ({} without the file)."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        config = tomllib.load(f)
    section = config.get(env, {})
    merged = dict(section.get("global", {}).get("parameters", {}))
    merged.update(section.get("deploy", {}).get("parameters", {}))
    return merged


def parse_overrides(items) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Key=Value pairs, as `sam deploy --parameter-overrides` takes them (also the long form
    ParameterKey=K,ParameterValue=V), from a list or one space-separated string."""
    if isinstance(items, str):
        items = [items]
    out: dict[str, str] = {}
    for item in items or []:
        for token in shlex.split(item):
            if token.startswith("ParameterKey="):
                fields = dict(part.split("=", 1) for part in token.split(",") if "=" in part)
                out[fields["ParameterKey"]] = fields.get("ParameterValue", "")
            elif "=" in token:
                key, value = token.split("=", 1)
                out[key] = value.strip("\"'")
    return out


def template_parameters(template: dict, overrides: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
    values.update({k: v for k, v in overrides.items() if k in values})
    return values


@contextlib.contextmanager
def _quiet():  # type: ignore[no-untyped-def]
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def read_template(path: str) -> dict:
    from cfnlint.decode import decode  # understands !Ref, !Sub and the other short tags

    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", path)
    with _quiet():
        template, errors = decode(path)
    if errors or template is None:
        raise ValueError(f"cannot read {path}: {errors[0].message if errors else 'empty'}: fix it (cfn-lint {path})")
    return template


def reservations(template: dict, params: dict[str, str]) -> list[tuple[str, int, str | None]]:
    """(function, what it reserves, the parameter it comes from) for each function that
    reserves concurrency."""
    globals_ = template.get("Globals", {}).get("Function", {})
    out = []
    for logical, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        if kind not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        props = resource.get("Properties", {}) or {}
        value = props.get("ReservedConcurrentExecutions")
        if value is None and kind == "AWS::Serverless::Function":
            value = globals_.get("ReservedConcurrentExecutions")
        if value is None:
            continue
        parameter = None
        if isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"] in params:
            parameter = value["Ref"]
            value = params[parameter]
        try:
            out.append((logical, int(str(value)), parameter))
        except ValueError:
            if parameter:
                raise ValueError(
                    f"{parameter}={value} ({logical}'s reserved concurrency) is not a number: fix "
                    "--parameter-overrides or samconfig.toml's parameter_overrides") from None
            raise ValueError(
                f"{logical}'s ReservedConcurrentExecutions ({value}) is neither a number nor a "
                "parameter's Ref: preflight.py cannot evaluate it, teach it or simplify the template") from None
    return out


# ------------------------------------------------------------------ the checks


def resolve_region(args: argparse.Namespace, config: dict, session) -> tuple[str | None, str]:  # type: ignore[no-untyped-def]
    if args.region:
        return args.region, "--region"
    if config.get("region"):
        return config["region"], args.config_file
    region = session.region_name  # AWS_DEFAULT_REGION, else the profile's (not AWS_REGION)
    if not region:
        return None, ""
    if os.environ.get("AWS_DEFAULT_REGION") == region:
        return region, "AWS_DEFAULT_REGION"
    return region, f"profile {session.profile_name}"


def already_reserved(session, region: str, stack: str) -> tuple[int, str | None]:  # type: ignore[no-untyped-def]
    """What the deployed stack's functions reserve now (0 before the first deploy)."""
    from botocore.exceptions import ClientError

    cloudformation = session.client("cloudformation", region_name=region)
    lambda_ = session.client("lambda", region_name=region)
    try:
        functions = [
            r["PhysicalResourceId"]
            for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
            for r in page["StackResourceSummaries"]
            if r["ResourceType"] == "AWS::Lambda::Function" and r.get("PhysicalResourceId")
        ]
        total = 0
        for function in functions:
            concurrency = lambda_.get_function(FunctionName=function).get("Concurrency", {})
            total += int(concurrency.get("ReservedConcurrentExecutions", 0))
        return total, None
    except ClientError as e:
        if "does not exist" in str(e):
            return 0, None
        return 0, f"could not read what stack {stack} already reserves ({e.response['Error']['Code']}); counting none"


def check(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(failures, summary lines)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    failures: list[str] = []
    summary: list[str] = []
    config = samconfig(args.config_file, args.config_env)
    profile = args.profile or config.get("profile")
    try:
        session = boto3.session.Session(profile_name=profile)
    except ProfileNotFound:
        return [fail(f"AWS profile {profile} is not configured: run `aws configure --profile {profile}` "
                     "(or `aws configure sso`), or set AWS_PROFILE to one that is")], []

    region, source = resolve_region(args, config, session)
    where = f"pass --region, or set region in {args.config_file} [{args.config_env}.deploy.parameters]"
    if region:
        summary.append(f"region {region} (from {source})")
    elif os.environ.get("AWS_REGION"):
        failures.append(fail(
            f"AWS_REGION={os.environ['AWS_REGION']} is set, but the SAM CLI (boto3) reads only "
            f"AWS_DEFAULT_REGION: export AWS_DEFAULT_REGION={os.environ['AWS_REGION']}, or {where}"))
    else:
        failures.append(fail(
            "no AWS region: set AWS_DEFAULT_REGION (the SAM CLI, like boto3, does not read "
            f"AWS_REGION) or `region` in your AWS profile, or {where}"))

    account = None
    try:
        # STS answers in any region; without one configured, ask us-east-1's.
        identity = session.client("sts", region_name=region or "us-east-1").get_caller_identity()
        account = identity["Account"]
        summary.insert(0, f"AWS account {account} as {identity['Arn']}")
    except NoCredentialsError:
        failures.insert(0, fail(
            "no AWS credentials: set AWS_PROFILE to a configured profile (`aws configure`, or "
            "`aws sso login --profile NAME`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"))
    except ClientError as e:
        error = e.response["Error"]
        failures.insert(0, fail(
            f"AWS refused the credentials ({error['Code']}: {error.get('Message', '')}): "
            "refresh them (`aws sso login`, or new access keys) and try again"))
    except BotoCoreError as e:
        failures.insert(0, fail(f"the credentials do not resolve ({e}): fix the AWS profile or environment"))

    try:
        template = read_template(args.template)
        overrides = parse_overrides(config.get("parameter_overrides"))
        overrides.update(parse_overrides(args.parameter_overrides))
        params = template_parameters(template, overrides)
        reserved = reservations(template, params)
    except OSError as e:
        failures.append(fail(f"cannot read {args.template} ({e.strerror or e}): run from the project's root or pass --template"))
        return failures, summary
    except ValueError as e:
        failures.append(fail(str(e)))
        return failures, summary
    if failures:
        return failures, summary  # the concurrency cannot be asked without both

    try:
        limits = session.client("lambda", region_name=region).get_account_settings()["AccountLimit"]
    except ClientError as e:
        error = e.response["Error"]
        failures.append(fail(
            f"cannot read the account's Lambda concurrency ({error['Code']}): allow "
            "lambda:GetAccountSettings (docs/iam/deployer-policy.json has it)"))
        return failures, summary
    unreserved, limit = int(limits["UnreservedConcurrentExecutions"]), int(limits["ConcurrentExecutions"])
    credit, note = already_reserved(session, region, args.stack_name or config.get("stack_name") or "pns-cdr")
    if note:
        summary.append(note)
    total = sum(amount for _, amount, _ in reserved)
    available = unreserved + credit
    breakdown = ", ".join(
        f"{logical} {amount}" + (f" = {parameter}" if parameter else "") for logical, amount, parameter in reserved
    ) or "nothing"
    have = f"{unreserved} unreserved of {limit}" + (f", and {credit} this stack already reserves" if credit else "")
    if available - total < FLOOR:
        advice = [
            f"ask AWS to raise the quota: Service Quotas, AWS Lambda, \"Concurrent executions\" "
            f"(aws service-quotas request-service-quota-increase --service-code lambda "
            f"--quota-code {QUOTA_CODE} --desired-value {limit + total + FLOOR - available} --region {region})"
        ]
        for logical, amount, parameter in reserved:
            if not parameter:
                continue
            lowest = int(template["Parameters"][parameter].get("MinValue", 0))
            most = available - FLOOR - (total - amount)
            if most >= lowest:
                advice.append(f"lower {parameter} to at most {most} (--parameter-overrides {parameter}={most})")
            else:
                advice.append(f"(lowering {parameter} to its minimum {lowest} would still leave too few)")
        failures.append(fail(
            f"Lambda concurrency in account {account}, {region}: the template reserves {total} "
            f"({breakdown}) and AWS refuses to leave fewer than {FLOOR} unreserved, so "
            f"{total + FLOOR} must be free, but there are {available} ({have}): "
            + "; or ".join(advice[:1] + [a for a in advice[1:] if not a.startswith("(")])
            + "".join(f" {a}" for a in advice[1:] if a.startswith("("))))
    else:
        summary.append(
            f"Lambda concurrency: {have}; the template reserves {total} ({breakdown}), "
            f"leaving {available - total} unreserved (AWS's floor: {FLOOR})")
    return failures, summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--config-file", default="samconfig.toml")
    parser.add_argument("--config-env", default="default")
    parser.add_argument("--profile")
    parser.add_argument("--region")
    parser.add_argument("--stack-name")
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args)
    failures, summary = check(args)
    for line in failures:
        print(line)
    if failures:
        return 1
    for line in summary:
        print(f"preflight: {line}")
    print("preflight: ok")
    return 0


# ------------------------------------------------------------------ the self-test


@contextlib.contextmanager
def no_network():  # type: ignore[no-untyped-def]
    """Any socket connection fails the self-test: everything must be answered in-process."""
    import socket
    from unittest import mock

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"the self-test tried to reach the network: {args[1:] or kwargs}")

    with mock.patch.object(socket.socket, "connect", refuse), \
            mock.patch.object(socket.socket, "connect_ex", refuse), \
            mock.patch.object(socket, "create_connection", refuse):
        yield


@contextlib.contextmanager
def aws_environment(directory: str, variables: dict[str, str], credentials: bool):  # type: ignore[no-untyped-def]
    """Fake credentials (or none), these variables, and none of your AWS configuration."""
    from unittest import mock

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_CONFIG_FILE": os.path.join(directory, "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(directory, "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **variables,
    })
    if credentials:
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    with mock.patch.dict(os.environ, env, clear=True):
        yield


@contextlib.contextmanager
def account_settings(unreserved: int, limit: int):  # type: ignore[no-untyped-def]
    """lambda:GetAccountSettings answers these (moto 5.2 does not implement it)."""
    from unittest import mock

    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def call(self, operation_name, api_params):  # type: ignore[no-untyped-def]
        if operation_name == "GetAccountSettings":
            return {"AccountLimit": {"ConcurrentExecutions": limit,
                                     "UnreservedConcurrentExecutions": unreserved}}
        return original(self, operation_name, api_params)

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", call):
        yield


def deployed_stack(reserving: list[int]) -> None:
    """A stack pns-cdr in the mock whose functions reserve these (an earlier deploy)."""
    import json

    import boto3

    resources: dict = {"Role": {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}}}}
    for i, amount in enumerate(reserving):
        resources[f"Function{i}"] = {"Type": "AWS::Lambda::Function", "Properties": {
            "Runtime": "provided.al2023", "Handler": "bootstrap", "Code": {"ZipFile": "x"},
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "ReservedConcurrentExecutions": amount}}
    boto3.client("cloudformation", region_name="us-east-1").create_stack(
        StackName="pns-cdr", TemplateBody=json.dumps({"Resources": resources}))


def self_test(args: argparse.Namespace) -> int:
    import tempfile

    from moto import mock_aws

    us = {"AWS_DEFAULT_REGION": "us-east-1"}
    samconfig_950 = '[default.deploy.parameters]\nparameter_overrides = "ArchiverConcurrency=\\"950\\" LogLevel=debug"\n'
    cases = [
        # what, environment, (unreserved, limit), samconfig.toml, extra arguments, what the
        # deployed stack reserves, expected exit code, expected text
        ("AWS's defaults (a quota of 1000)", us, (1000, 1000), "", [], [], 0,
         "leaving 994 unreserved"),
        ("a new account's quota of 10", us, (10, 10), "", [], [], 1,
         "AWS refuses to leave fewer than 100 unreserved"),
        ("ArchiverConcurrency=950 in samconfig.toml's parameter_overrides", us, (1000, 1000),
         samconfig_950, [], [], 1, "lower ArchiverConcurrency to at most 899"),
        ("... and --parameter-overrides ArchiverConcurrency=899 over it", us, (1000, 1000),
         samconfig_950, ["--parameter-overrides", "ArchiverConcurrency=899"], [], 0,
         "leaving 100 unreserved"),
        ("an update with just enough: the deployed stack's 5 + 1 count as free", us, (100, 106),
         "", [], [5, 1], 0, "and 6 this stack already reserves"),
        ("no region", {}, (1000, 1000), "", [], [], 1, "no AWS region: set AWS_DEFAULT_REGION"),
        ("AWS_REGION alone, which the SAM CLI does not read", {"AWS_REGION": "eu-west-1"},
         (1000, 1000), "", [], [], 1, "export AWS_DEFAULT_REGION=eu-west-1"),
        ("the region from samconfig.toml", {}, (1000, 1000),
         '[default.deploy.parameters]\nregion = "eu-west-1"\n', [], [], 0, "region eu-west-1 (from"),
        ("no credentials (outside the mock; instance metadata off)", us, None, "", [], [], 1,
         "no AWS credentials"),
    ]
    failed = 0
    for what, variables, settings, config, extra, reserving, code, expected in cases:
        with tempfile.TemporaryDirectory() as directory:
            config_file = os.path.join(directory, "samconfig.toml")
            if config:
                with open(config_file, "w", encoding="utf-8") as f:
                    f.write(config)
            out = io.StringIO()
            argv = ["--template", args.template, "--config-file", config_file, *extra]
            with no_network(), aws_environment(directory, variables, credentials=settings is not None):
                if settings is None:
                    with contextlib.redirect_stdout(out):
                        rc = main(argv)
                else:
                    with mock_aws(), account_settings(*settings):
                        os.environ.pop("AWS_ENDPOINT_URL", None)
                        if reserving:
                            deployed_stack(reserving)
                        with contextlib.redirect_stdout(out):
                            rc = main(argv)
        text = out.getvalue()
        ok = rc == code and expected in text
        failed += not ok
        print(f"self-test: {what}: {'as expected' if ok else 'WRONG'} (exit {rc})")
        for line in text.splitlines():
            if ok and code == 0 and not line.startswith(("preflight: AWS", "preflight: Lambda", "preflight: region")):
                continue
            print(f"    {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
