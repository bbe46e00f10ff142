//! Invariants of `template.yaml` that linters do not check.

use pns_cdr::config::{DEFAULT_BUCKET, DEFAULT_QUEUE, DEFAULT_TABLE};
use pns_cdr::domain::item::{
    BUSINESS_INDEX, CALL_ID_INDEX, CUSTOMER_BIND_INDEX, PENDING_ATTRIBUTE, PENDING_INDEX,
};
use pns_cdr::metrics::{CATALOGUE, NAMESPACE};
use serde_norway::Value;

/// A path in the repository (tests run in `dev/`).
fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn template_text() -> String {
    std::fs::read_to_string(repo("template.yaml")).unwrap()
}

fn template() -> Value {
    serde_norway::from_str(&template_text()).unwrap()
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    &t["Resources"][name]["Properties"]
}

fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.as_str().unwrap().to_owned(), r))
        .collect()
}

fn functions(t: &Value) -> Vec<(String, &Value)> {
    resources_of_type(t, "AWS::Serverless::Function")
}

/// True when `v` is `!Ref name`.
fn is_ref(v: &Value, name: &str) -> bool {
    matches!(v, Value::Tagged(t) if t.tag == "Ref" && t.value == name)
}

/// Every string inside `v`, tags included (`!GetAtt A.B` gives "GetAtt" and "A.B").
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Mapping(m) => m.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        Value::Tagged(t) => {
            out.push(t.tag.to_string());
            strings(&t.value, out);
        }
        _ => {}
    }
}

fn mentions(v: &Value, needle: &str) -> bool {
    let mut all = Vec::new();
    strings(v, &mut all);
    all.iter().any(|s| s.contains(needle))
}

/// The text of every `.rs` file under `dir`.
fn rust_sources(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            text += &rust_sources(&path);
        } else if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).unwrap();
        }
    }
    text
}

/// The statements of a function's inline policies.
fn statements(f: &Value) -> Vec<&Value> {
    f["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().unwrap())
        .collect()
}

fn actions(statement: &Value) -> Vec<&str> {
    match &statement["Action"] {
        Value::String(a) => vec![a.as_str()],
        Value::Sequence(a) => a.iter().map(|a| a.as_str().unwrap()).collect(),
        other => panic!("unexpected Action {other:?}"),
    }
}

#[test]
fn queue_visibility_covers_six_archiver_timeouts_and_redrive_is_sane() {
    let t = template();
    let timeout = resource(&t, "ArchiverFunction")["Timeout"]
        .as_u64()
        .unwrap();
    let visibility = resource(&t, "RecordingQueue")["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} < 6 × {timeout}"
    );
    let redrive = &resource(&t, "RecordingQueue")["RedrivePolicy"];
    let max_receive = redrive["maxReceiveCount"].as_u64().unwrap();
    assert!(max_receive >= 5);
    assert_eq!(
        max_receive,
        u64::from(pns_cdr::domain::recording::MAX_DELIVERIES),
        "the local stack uses the same redrive"
    );
    let mapping = resource(&t, "ArchiverEventSourceMapping");
    assert!(mapping["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v == "ReportBatchItemFailures"));
    assert!(mapping["BatchSize"].as_u64().unwrap() <= 10);
    assert_eq!(
        resource(&t, "RecordingDeadLetterQueue")["MessageRetentionPeriod"].as_u64(),
        Some(1_209_600)
    );
}

#[test]
fn archiver_concurrency_is_capped_without_throttling_jobs_into_the_dlq() {
    let t = template();
    // Reserved concurrency alone would let the SQS event source invoke more copies than may
    // run; the throttled batches would count receives and could push good jobs to the DLQ.
    assert!(is_ref(
        &resource(&t, "ArchiverFunction")["ReservedConcurrentExecutions"],
        "ArchiverConcurrency"
    ));
    assert!(is_ref(
        &resource(&t, "ArchiverEventSourceMapping")["ScalingConfig"]["MaximumConcurrency"],
        "ArchiverConcurrency"
    ));
    let parameter = &t["Parameters"]["ArchiverConcurrency"];
    assert_eq!(parameter["Default"], 5);
    assert!(parameter["MinValue"].as_u64().unwrap() >= 2, "SQS minimum");
}

#[test]
fn every_function_is_arm64_al2023_built_by_cargo_lambda() {
    let t = template();
    let functions = functions(&t);
    let names: Vec<&str> = functions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        5,
        "webhook, archiver, reconciler, publisher and the pre-traffic hook: {names:?}"
    );
    for (name, f) in functions {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{name}");
        assert_eq!(
            p["Architectures"].as_sequence().map(Vec::len),
            Some(1),
            "{name}"
        );
        assert_eq!(p["Architectures"][0], "arm64", "{name}");
        assert!(is_ref(&p["Tracing"], "Tracing"), "{name}: Tracing");
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert!(
            repo(&format!("src/bin/{binary}.rs")).exists(),
            "{name}: no binary {binary}"
        );
        // Its own log group, with the retention the operator chose.
        let Value::Tagged(group) = &p["LoggingConfig"]["LogGroup"] else {
            panic!("{name}: LoggingConfig.LogGroup is not a !Ref")
        };
        assert!(
            group.tag == "Ref",
            "{name}: LoggingConfig.LogGroup is not a !Ref"
        );
        let group = &t["Resources"][group.value.as_str().unwrap()];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{name}");
        assert!(
            is_ref(&group["Properties"]["RetentionInDays"], "LogRetentionDays"),
            "{name}"
        );
    }
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Actions IAM knows no resource for: `"*"` is their only possible resource.
const RESOURCELESS_ACTIONS: &[&str] = &["dynamodb:ListStreams"];

/// The functions' own `Policies`. The CloudWatch Logs and X-Ray permissions SAM adds through
/// managed policies (AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess) are not ours.
#[test]
fn no_policy_grants_a_wildcard_resource() {
    let t = template();
    let mut checked = 0;
    for (name, f) in functions(&t) {
        for statement in statements(f) {
            // `${Function.Arn}:*` is one function's versions, not a wildcard resource.
            let wildcard = as_list(&statement["Resource"]).iter().any(|r| {
                r.as_str()
                    .is_some_and(|r| r.contains('*') && !r.contains('/') && !r.starts_with("${"))
            });
            if wildcard {
                for action in actions(statement) {
                    assert!(
                        RESOURCELESS_ACTIONS.contains(&action),
                        "{name}: {action} on a wildcard resource"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked} statements");
}

#[test]
fn reconciler_only_queries_the_pending_index_and_requeues() {
    let t = template();
    let reconciler = &t["Resources"]["ReconcilerFunction"];
    let statements = statements(reconciler);
    let mut granted: Vec<&str> = statements.iter().flat_map(|s| actions(s)).collect();
    granted.sort_unstable();
    assert_eq!(granted, ["dynamodb:Query", "sqs:SendMessage"]);
    for s in &statements {
        if actions(s) == ["dynamodb:Query"] {
            let Value::Tagged(sub) = &s["Resource"] else {
                panic!("Query resource is not a !Sub")
            };
            assert_eq!(
                sub.value.as_str(),
                Some(format!("${{CallsTable.Arn}}/index/{PENDING_INDEX}").as_str())
            );
        }
    }
    let schedule = &reconciler["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .values()
        .next()
        .unwrap()["Properties"]["Schedule"];
    assert!(is_ref(schedule, "ReconcileSchedule"));
}

#[test]
fn table_indexes_match_the_code() {
    let t = template();
    let table = resource(&t, "CallsTable");
    let attribute_type = |name: &str| {
        table["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|d| d["AttributeName"] == name)
            .unwrap_or_else(|| panic!("no attribute definition for {name}"))["AttributeType"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let index = |name: &str| -> &Value {
        table["GlobalSecondaryIndexes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|i| i["IndexName"] == name)
            .unwrap_or_else(|| panic!("no index {name}"))
    };
    let keys = |name: &str| -> Vec<(String, String)> {
        index(name)["KeySchema"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                let attribute = k["AttributeName"].as_str().unwrap().to_owned();
                (attribute, k["KeyType"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let pair = |a: &str, k: &str| (a.to_owned(), k.to_owned());

    // The sparse index the reconciler reads: only items that carry `pending` are in it.
    assert_eq!(
        keys(PENDING_INDEX),
        [
            pair(PENDING_ATTRIBUTE, "HASH"),
            pair("receivedAtEpoch", "RANGE")
        ]
    );
    // What each index projects is not repeated here: the local stack builds the tables from
    // this template, so the reconciler's tests fail when the projection lacks what it reads.
    assert_eq!(
        keys(BUSINESS_INDEX),
        [pair("businessId", "HASH"), pair("startAt", "RANGE")]
    );
    assert_eq!(keys(CALL_ID_INDEX), [pair("callId", "HASH")]);
    assert_eq!(
        keys(CUSTOMER_BIND_INDEX),
        [pair("customerBindId", "HASH"), pair("startAt", "RANGE")]
    );

    // Key types as the item builder writes them (strings S, integers N).
    for (attribute, ty) in [
        ("id", "N"),
        (PENDING_ATTRIBUTE, "S"),
        ("receivedAtEpoch", "N"),
        ("businessId", "S"),
        ("startAt", "N"),
        ("callId", "S"),
        ("customerBindId", "S"),
    ] {
        assert_eq!(attribute_type(attribute), ty, "{attribute}");
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        "expiresAt"
    );
    assert_eq!(table["DeletionProtectionEnabled"], true);
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

#[test]
fn access_log_never_records_the_query_string() {
    let t = template();
    let settings = &resource(&t, "HttpApi")["AccessLogSettings"];
    let format = settings["Format"].as_str().unwrap();
    // The token travels as ?token=; none of these may reach the log.
    for forbidden in [
        "requestUri",
        "querystring",
        "queryString",
        "rawQuery",
        "$request.",
        "$input",
        "token",
        "authorization",
    ] {
        assert!(
            !format.to_lowercase().contains(&forbidden.to_lowercase()),
            "access log format contains {forbidden}"
        );
    }
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(format).expect("the access log format is JSON");
    for field in ["requestId", "ip", "status", "routeKey", "path"] {
        assert!(fields.contains_key(field), "{field}");
    }
    assert_eq!(fields["path"], "$context.path");
    let Value::Tagged(destination) = &settings["DestinationArn"] else {
        panic!("DestinationArn is not a !GetAtt")
    };
    assert_eq!(destination.value, "ApiAccessLogGroup.Arn");
}

#[test]
fn names_match_the_code_and_the_token_stays_secret() {
    let t = template();
    let text = template_text();
    assert_eq!(t["Parameters"]["TableName"]["Default"], DEFAULT_TABLE);
    assert_eq!(t["Parameters"]["QueueName"]["Default"], DEFAULT_QUEUE);
    assert!(DEFAULT_BUCKET.starts_with("pns-recordings"));

    // The token is generated into Secrets Manager; no parameter, output or environment
    // variable carries its value.
    assert!(t["Parameters"].get("WebhookTokens").is_none());
    let secret = &t["Resources"]["WebhookTokenSecret"];
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    let generate = &secret["Properties"]["GenerateSecretString"];
    assert!(generate["PasswordLength"].as_u64().unwrap() >= 32);
    assert_eq!(generate["ExcludePunctuation"], true, "URL-safe tokens");
    assert!(generate.get("SecretStringTemplate").is_none());
    assert!(!text.contains("{{resolve:secretsmanager"));
    for (name, output) in t["Outputs"].as_mapping().unwrap() {
        let value = &output["Value"];
        assert!(
            !mentions(value, "SecretString"),
            "{name:?} outputs the token"
        );
        assert!(
            !mentions(value, "WebhookTokenSecret") || is_ref(value, "WebhookTokenSecret"),
            "{name:?}: only the secret's ARN (!Ref) may be an output"
        );
    }
    assert!(is_ref(
        &t["Outputs"]["WebhookTokenSecretArn"]["Value"],
        "WebhookTokenSecret"
    ));
    assert!(is_ref(
        &t["Outputs"]["NumberKeySecretArn"]["Value"],
        "NumberKeySecret"
    ));
    for (name, output) in t["Outputs"].as_mapping().unwrap() {
        let value = &output["Value"];
        assert!(
            !mentions(value, "NumberKeySecret") || is_ref(value, "NumberKeySecret"),
            "{name:?}: only the key secret's ARN (!Ref) may be an output"
        );
    }
    for (name, f) in functions(&t) {
        let variables = &f["Properties"]["Environment"]["Variables"];
        assert!(variables.get("PNS_WEBHOOK_TOKENS").is_none(), "{name}");
        for (var, value) in variables.as_mapping().unwrap() {
            assert!(
                !mentions(value, "WebhookTokenSecret") || is_ref(value, "WebhookTokenSecret"),
                "{name}: {var:?} carries more than the secret's ARN"
            );
        }
        // Only the webhook and its pre-traffic hook may read the token, and only the webhook
        // and the publisher the number key: each statement one secret.
        for s in statements(f) {
            if actions(s).iter().any(|a| a.starts_with("secretsmanager:")) {
                assert_eq!(actions(s), ["secretsmanager:GetSecretValue"]);
                let readers: &[&str] = if is_ref(&s["Resource"], "WebhookTokenSecret") {
                    &["WebhookFunction", "PreTrafficHookFunction"]
                } else {
                    assert!(is_ref(&s["Resource"], "NumberKeySecret"), "{name}");
                    &["WebhookFunction", "PublisherFunction"]
                };
                assert!(readers.contains(&name.as_str()), "{name}");
            }
        }
    }
    let webhook = &resource(&t, "WebhookFunction")["Environment"]["Variables"];
    assert!(is_ref(
        &webhook["PNS_WEBHOOK_TOKENS_SECRET_ARN"],
        "WebhookTokenSecret"
    ));
    assert!(is_ref(&webhook["PNS_RETENTION_DAYS"], "RetentionDays"));
    assert!(statements(&t["Resources"]["WebhookFunction"])
        .iter()
        .any(|s| actions(s) == ["secretsmanager:GetSecretValue"]));

    // Every variable the template sets is one the code reads.
    let source: String = ["src/config.rs", "src/telemetry.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(repo(p)).unwrap())
        .collect();
    for (name, f) in functions(&t) {
        for (var, _) in f["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap()
        {
            let var = var.as_str().unwrap();
            assert!(
                var == "RUST_LOG" || source.contains(&format!("\"{var}\"")),
                "{name}: {var} is read nowhere"
            );
        }
    }
}

#[test]
fn every_alarm_notifies_the_topic_and_says_what_to_do() {
    let t = template();
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    let names: Vec<&str> = alarms.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "DeadLetterQueueNotEmptyAlarm",
        "WebhookErrorsAlarm",
        "ArchiverErrorsAlarm",
        "ReconcilerErrorsAlarm",
        "Webhook5xxAlarm",
        "ThrottlesAlarm",
        "PendingTooLongAlarm",
        "UnauthorizedPushesAlarm",
        "ApiClientErrorsAlarm",
        "QuarantinedPushesAlarm",
        "RecordingFailedAlarm",
        "UnboundCallsAlarm",
    ] {
        assert!(names.contains(&expected), "no {expected}");
    }
    for (name, alarm) in &alarms {
        let p = &alarm["Properties"];
        for list in ["AlarmActions", "OKActions"] {
            let targets = p[list].as_sequence().unwrap();
            assert!(
                targets.len() == 1 && is_ref(&targets[0], "AlarmTopic"),
                "{name}: {list}"
            );
        }
        // Only the silence alarm counts missing data: silence is what it is for.
        let missing = if name == "NoPushAlarm" {
            "breaching"
        } else {
            "notBreaching"
        };
        assert_eq!(p["TreatMissingData"], missing, "{name}");
        assert!(
            p["AlarmDescription"].as_str().unwrap().len() >= 80,
            "{name}: say what it means and what to do"
        );
    }
    let pending = resource(&t, "PendingTooLongAlarm");
    assert_eq!(pending["Namespace"], NAMESPACE);
    assert_eq!(pending["MetricName"], "PendingOverdue");
    assert_eq!(pending["Dimensions"][0]["Name"], "Function");
    assert_eq!(pending["Dimensions"][0]["Value"], "reconciler");
    let api = resource(&t, "Webhook5xxAlarm");
    assert_eq!(api["Namespace"], "AWS/ApiGateway");
    assert_eq!(api["MetricName"], "5xx");
    // The topic must be usable by CloudWatch: not the AWS managed key alias/aws/sns.
    let key = &resource(&t, "AlarmTopic")["KmsMasterKeyId"];
    assert!(!mentions(key, "alias/aws/sns"));
    // CloudWatch may use the key for this stack's alarms only, in this account.
    let policy = &resource(&t, "AlarmTopicKey")["KeyPolicy"]["Statement"];
    let cloudwatch = (policy.as_sequence().unwrap().iter())
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("a statement for CloudWatch");
    let condition = &cloudwatch["Condition"];
    assert!(is_ref(
        &condition["StringEquals"]["aws:SourceAccount"],
        "AWS::AccountId"
    ));
    assert!(
        mentions(
            &condition["ArnLike"]["aws:SourceArn"],
            ":alarm:${AWS::StackName}-*"
        ),
        "{condition:?}"
    );
    for (name, alarm) in &alarms {
        assert!(
            mentions(&alarm["Properties"]["AlarmName"], "${AWS::StackName}-"),
            "{name}: the key policy admits alarms named <stack>-*"
        );
    }
}

/// The metrics an alarm watches, as (namespace, metric name, value of its first dimension),
/// whether it watches one metric or a metric-math expression over several.
fn watched(alarm: &Value) -> Vec<(String, String, String)> {
    let p = &alarm["Properties"];
    let one = |m: &Value| {
        let dimension = match &m["Dimensions"][0]["Value"] {
            Value::String(v) => v.clone(),
            other => format!("{other:?}"),
        };
        (
            m["Namespace"].as_str().unwrap_or_default().to_owned(),
            m["MetricName"].as_str().unwrap_or_default().to_owned(),
            dimension,
        )
    };
    match p["Metrics"].as_sequence() {
        Some(metrics) => metrics
            .iter()
            .filter(|m| m.get("MetricStat").is_some())
            .map(|m| one(&m["MetricStat"]["Metric"]))
            .collect(),
        None => vec![one(p)],
    }
}

/// Every path on which NXCLOUD gives up on a push, or a recording ends FAILED, raises an
/// alarm; a new loss class belongs in this list.
#[test]
fn every_loss_class_has_an_alarm_with_an_action() {
    let t = template();
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    let loss_classes = [
        (
            "unauthorized pushes (401/403)",
            "PnsCdr",
            "PushUnauthorized",
            "webhook",
        ),
        (
            "stage 4xx, 429 included",
            "AWS/ApiGateway",
            "4xx",
            "Ref(HttpApi)",
        ),
        (
            "quarantined pushes (400/413/422)",
            "PnsCdr",
            "PushQuarantined",
            "webhook",
        ),
        (
            "recordings FAILED at intake",
            "PnsCdr",
            "RecordingFailed",
            "webhook",
        ),
        (
            "recordings FAILED by the archiver",
            "PnsCdr",
            "RecordingFailed",
            "archiver",
        ),
        (
            "pushes answered 5xx",
            "AWS/ApiGateway",
            "5xx",
            "Ref(HttpApi)",
        ),
        (
            "jobs the archiver could not decide",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "",
        ),
        (
            "recordings PENDING too long",
            "PnsCdr",
            "PendingOverdue",
            "reconciler",
        ),
        (
            "stream batches the publisher gave up on",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "PublisherFailureQueue",
        ),
        (
            "stream records close to expiring unpublished",
            "AWS/Lambda",
            "IteratorAge",
            "PublisherFunction",
        ),
        (
            "events the lake's delivery gave up on",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "LakeDeadLetterQueue",
        ),
        (
            "events the lake could not convert",
            "AWS/Firehose",
            "FailedConversion.Records",
            "LakeDeliveryStream",
        ),
        (
            "lake deliveries to S3 that keep failing",
            "AWS/Firehose",
            "DeliveryToS3.DataFreshness",
            "LakeDeliveryStream",
        ),
        (
            "pushes to a path the API does not have (a wrong URL)",
            "PnsCdr",
            "RouteNotFound",
            "",
        ),
        (
            "a stack no push reaches",
            "PnsCdr",
            "PushReceived",
            "webhook",
        ),
        (
            "conflicting pushes, binding errors included",
            "PnsCdr",
            "PushConflict",
            "webhook",
        ),
    ];
    for (class, namespace, metric, dimension) in loss_classes {
        let found = alarms.iter().find(|(_, alarm)| {
            watched(alarm).iter().any(|(ns, m, d)| {
                ns == namespace
                    && m == metric
                    && (dimension.is_empty()
                        || d.contains(dimension.trim_start_matches("Ref(").trim_end_matches(')')))
            })
        });
        let (name, alarm) = found.unwrap_or_else(|| panic!("no alarm for {class}"));
        let actions = alarm["Properties"]["AlarmActions"].as_sequence();
        assert!(
            actions.is_some_and(|a| a.iter().any(|a| is_ref(a, "AlarmTopic"))),
            "{name} ({class}) notifies nobody"
        );
    }
    // The intake and archiver failures are one alarm: one metric, wherever it is decided.
    let failed = &t["Resources"]["RecordingFailedAlarm"];
    assert_eq!(watched(failed).len(), 2);
    // A wrong URL pages at the first request, from the access log.
    let route = &t["Resources"]["RouteNotFoundAlarm"]["Properties"];
    assert_eq!(
        (
            route["Threshold"].as_u64(),
            route["EvaluationPeriods"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let filter = &t["Resources"]["RouteNotFoundMetric"]["Properties"];
    assert!(is_ref(&filter["LogGroupName"], "ApiAccessLogGroup"));
    assert!(filter["FilterPattern"]
        .as_str()
        .unwrap()
        .contains(r#"$.status = "404""#));
    // Silence pages after NoPushAlarmHours, and 0 turns it off.
    let silence = &t["Resources"]["NoPushAlarm"];
    assert_eq!(silence["Condition"], "HasNoPushAlarm");
    assert!(is_ref(
        &silence["Properties"]["EvaluationPeriods"],
        "NoPushAlarmHours"
    ));
    assert_eq!(silence["Properties"]["Period"].as_u64(), Some(3600));
    // Unbound calls: optional, on a threshold parameter.
    let unbound = &t["Resources"]["UnboundCallsAlarm"];
    assert_eq!(unbound["Condition"], "HasUnboundCallAlarm");
    assert!(is_ref(
        &unbound["Properties"]["Threshold"],
        "UnboundCallAlarmThreshold"
    ));
}

#[test]
fn dashboard_shows_every_metric_the_code_emits() {
    let t = template();
    let Value::Tagged(body) = &resource(&t, "OperationsDashboard")["DashboardBody"] else {
        panic!("DashboardBody is not a !Sub")
    };
    let body = body.value.as_str().unwrap();
    // What the handlers emit: every `Metric::` they name outside the catalogue itself.
    let mut source = rust_sources(&repo("src/handlers"));
    source += &rust_sources(&repo("src/adapters"));
    let mut listed = 0;
    for (function, metrics) in CATALOGUE {
        for metric in *metrics {
            let name = metric.name();
            let widget_metric = format!(
                "[\"{NAMESPACE}\", \"{name}\", \"Function\", \"{}\"",
                function.as_str()
            );
            assert!(body.contains(&widget_metric), "dashboard lacks {name}");
            assert!(
                source.contains(&format!("Metric::{name}")),
                "{name} is emitted nowhere in src/"
            );
            listed += 1;
        }
    }
    assert!(listed >= 14, "the catalogue lists {listed} metrics");
}

#[test]
fn the_webhook_route_lets_the_function_answer_every_method() {
    let t = template();
    let event = &t["Resources"]["WebhookFunction"]["Properties"]["Events"]["HttpApi"]["Properties"];
    assert_eq!(event["Path"], pns_cdr::handlers::webhook::CALL_RESULT_ROUTE);
    assert_eq!(
        event["Method"], "ANY",
        "a GET must reach the function to be answered 405"
    );
}

/// `!GetAtt Resource.Attribute` as its string.
fn get_att(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "GetAtt" => t.value.as_str(),
        _ => None,
    }
}

/// Both tables stream both images to the publisher, whose mappings retry from the failed
/// record, bisect, and describe what they give up on in a queue an alarm watches.
#[test]
fn both_tables_stream_to_the_publisher_which_never_drops_a_batch_silently() {
    let t = template();
    for table in ["CallsTable", "BindingErrorsTable"] {
        assert_eq!(
            resource(&t, table)["StreamSpecification"]["StreamViewType"],
            "NEW_AND_OLD_IMAGES",
            "{table}"
        );
    }
    let mappings = resources_of_type(&t, "AWS::Lambda::EventSourceMapping");
    let mut streams: Vec<&str> = Vec::new();
    for (name, mapping) in &mappings {
        let p = &mapping["Properties"];
        let Some(source) = get_att(&p["EventSourceArn"]) else {
            continue;
        };
        if !source.ends_with(".StreamArn") {
            continue;
        }
        streams.push(source);
        // The alias: each release is shifted to by CodeDeploy, the mapping follows it.
        assert!(
            is_ref(&p["FunctionName"], "PublisherFunction.Alias"),
            "{name}"
        );
        assert_eq!(p["StartingPosition"], "TRIM_HORIZON", "{name}");
        assert_eq!(p["BisectBatchOnFunctionError"], true, "{name}");
        assert_eq!(
            p["FunctionResponseTypes"][0], "ReportBatchItemFailures",
            "{name}"
        );
        // One invocation per shard: events of one record stay in order.
        assert_eq!(p["ParallelizationFactor"], 1, "{name}");
        assert!(
            p["MaximumRetryAttempts"].as_u64().is_some(),
            "{name}: retries bounded"
        );
        assert_eq!(
            get_att(&p["DestinationConfig"]["OnFailure"]["Destination"]),
            Some("PublisherFailureQueue.Arn"),
            "{name}"
        );
        assert!(
            mentions(&p["Enabled"], "EventsEnabled"),
            "{name}: Events parameter"
        );
    }
    streams.sort_unstable();
    assert_eq!(
        streams,
        ["BindingErrorsTable.StreamArn", "CallsTable.StreamArn"]
    );
    let publisher = &t["Resources"]["PublisherFunction"]["Properties"];
    let variables = &publisher["Environment"]["Variables"];
    assert!(is_ref(&variables["PNS_EVENT_BUS_NAME"], "EventBus"));
    assert!(is_ref(
        &variables["PNS_PHONE_NUMBERS"],
        "PhoneNumbersInEvents"
    ));
    let phones = &t["Parameters"]["PhoneNumbersInEvents"];
    assert_eq!(phones["Default"], "masked");
    for value in ["masked", "full", "omitted"] {
        assert!(
            value
                .parse::<pns_cdr::domain::events::PhoneNumbers>()
                .is_ok(),
            "{value}"
        );
        assert!(mentions(&phones["AllowedValues"], value), "{value}");
    }
}

fn lake_table() -> serde_json::Value {
    let text = std::fs::read_to_string(repo("analytics/events-table.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The Glue table is `analytics/events-table.json` (what `pnsctl report` builds locally), and
/// its detail struct holds every field of every event schema with the schema's type.
#[test]
fn the_lake_table_is_the_event_schemas() {
    let t = template();
    let input = &resource(&t, "LakeEventsTable")["TableInput"];
    let spec = lake_table();
    let columns = input["StorageDescriptor"]["Columns"].as_sequence().unwrap();
    let glue: Vec<(&str, &str)> = columns
        .iter()
        .map(|c| (c["Name"].as_str().unwrap(), c["Type"].as_str().unwrap()))
        .collect();
    let local: Vec<(&str, &str)> = spec["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(glue, local);
    assert_eq!(input["PartitionKeys"][0]["Name"], "day");
    assert_eq!(spec["partitionKeys"][0]["name"], "day");

    let mut fields = std::collections::BTreeMap::new();
    for detail_type in pns_cdr::domain::events::DetailType::ALL {
        let path = repo(&format!(
            "schemas/events/{detail_type}.v{}.json",
            pns_cdr::domain::events::DETAIL_VERSION
        ));
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for (name, property) in schema["properties"].as_object().unwrap() {
            let hive = match property["type"].as_str() {
                Some("integer") => "bigint",
                Some("boolean") => "boolean",
                _ if property["const"].is_u64() => "bigint",
                _ => "string",
            };
            if let Some(other) = fields.insert(name.clone(), hive) {
                assert_eq!(other, hive, "{name} has two types");
            }
        }
    }
    let expected = format!(
        "struct<{}>",
        fields
            .iter()
            .map(|(name, ty)| format!("{name}:{ty}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let detail = glue.iter().find(|(name, _)| *name == "detail").unwrap().1;
    assert_eq!(detail, expected);
}

/// Firehose converts to Parquet against that table and writes where its partition projection
/// looks; the workgroup encrypts results and caps every query's scan.
#[test]
fn the_lake_is_parquet_where_athena_looks_and_queries_are_capped() {
    let t = template();
    let s3 = &resource(&t, "LakeDeliveryStream")["ExtendedS3DestinationConfiguration"];
    assert_eq!(
        s3["Prefix"],
        "analytics/events/day=!{timestamp:yyyy-MM-dd}/"
    );
    let conversion = &s3["DataFormatConversionConfiguration"];
    assert_eq!(conversion["Enabled"], true);
    assert!(conversion["OutputFormatConfiguration"]["Serializer"]
        .get("ParquetSerDe")
        .is_some());
    assert_eq!(
        conversion["InputFormatConfiguration"]["Deserializer"]["OpenXJsonSerDe"]
            ["ColumnToJsonKeyMappings"]["detail_type"],
        "detail-type"
    );
    let schema = &conversion["SchemaConfiguration"];
    assert!(is_ref(&schema["TableName"], "LakeEventsTable"));
    assert!(is_ref(&schema["DatabaseName"], "LakeDatabase"));
    assert!(s3["BufferingHints"]["SizeInMBs"].as_u64().unwrap() >= 64);

    let parameters = &resource(&t, "LakeEventsTable")["TableInput"]["Parameters"];
    assert_eq!(parameters["projection.enabled"], "true");
    assert_eq!(parameters["projection.day.format"], "yyyy-MM-dd");
    assert!(mentions(
        &parameters["storage.location.template"],
        "/analytics/events/day=${!day}/"
    ));

    let rule = resource(&t, "LakeRule");
    assert!(is_ref(&rule["EventBusName"], "EventBus"));
    assert!(mentions(&rule["State"], "LakeEnabled"));
    assert!(rule["Targets"][0].get("DeadLetterConfig").is_some());

    let workgroup = &resource(&t, "LakeWorkGroup")["WorkGroupConfiguration"];
    assert_eq!(workgroup["EnforceWorkGroupConfiguration"], true);
    assert!(is_ref(
        &workgroup["BytesScannedCutoffPerQuery"],
        "AthenaBytesScannedCutoff"
    ));
    assert_eq!(
        workgroup["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"],
        "SSE_S3"
    );
}

/// Each named query's SQL is `analytics/queries/<Name>.sql`, the file `pnsctl report` runs,
/// and every file there is a named query.
#[test]
fn the_named_queries_are_the_tested_sql() {
    let t = template();
    let queries = resources_of_type(&t, "AWS::Athena::NamedQuery");
    let mut names: Vec<String> = Vec::new();
    for (logical, query) in &queries {
        let p = &query["Properties"];
        let name = p["Name"].as_str().unwrap();
        let file = std::fs::read_to_string(repo(&format!("analytics/queries/{name}.sql")))
            .unwrap_or_else(|_| panic!("{logical}: no analytics/queries/{name}.sql"));
        assert_eq!(p["QueryString"].as_str().unwrap(), file, "{logical}");
        assert!(is_ref(&p["WorkGroup"], "LakeWorkGroup"), "{logical}");
        assert!(is_ref(&p["Database"], "LakeDatabase"), "{logical}");
        names.push(name.to_owned());
    }
    let mut files: Vec<String> = std::fs::read_dir(repo("analytics/queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    files.sort();
    assert_eq!(names, files);
}

/// Releases reach NXCLOUD's data through aliases that CodeDeploy shifts, after the webhook's
/// pre-traffic hook proved the new version, and roll back on the alarms that mean "this
/// version loses data".
#[test]
fn releases_are_shifted_by_codedeploy_behind_a_proven_webhook() {
    let t = template();
    let deployment = &t["Parameters"]["DeploymentType"];
    assert!(
        deployment["Default"]
            .as_str()
            .is_some_and(|d| d.starts_with("Canary") || d.starts_with("Linear")),
        "a gradual shift by default"
    );
    assert!(mentions(&deployment["AllowedValues"], "AllAtOnce"));
    let rollback = [
        (
            "WebhookFunction",
            &[
                "Webhook5xxAlarm",
                "WebhookErrorsAlarm",
                "UnauthorizedPushesAlarm",
                "QuarantinedPushesAlarm",
                "ConflictingPushesAlarm",
            ][..],
        ),
        (
            "ArchiverFunction",
            &["ArchiverErrorsAlarm", "RecordingFailedAlarm"][..],
        ),
        (
            "PublisherFunction",
            &["PublisherErrorsAlarm", "PublisherFailuresAlarm"][..],
        ),
    ];
    for (function, alarms) in rollback {
        let p = &resource(&t, function);
        assert_eq!(p["AutoPublishAlias"], "live", "{function}");
        let preference = &p["DeploymentPreference"];
        assert!(is_ref(&preference["Type"], "DeploymentType"), "{function}");
        for alarm in alarms {
            let listed = as_list(&preference["Alarms"])
                .into_iter()
                .any(|a| is_ref(a, alarm));
            assert!(listed, "{function}: no rollback on {alarm}");
        }
    }
    // The webhook's hook: a function of ours that CodeDeploy's role may invoke, given the
    // version under test.
    let webhook = &resource(&t, "WebhookFunction");
    assert!(is_ref(
        &webhook["DeploymentPreference"]["Hooks"]["PreTraffic"],
        "PreTrafficHookFunction"
    ));
    let hook = &resource(&t, "PreTrafficHookFunction");
    assert!(mentions(&hook["FunctionName"], "CodeDeployHook_"));
    let variables = &hook["Environment"]["Variables"];
    assert!(is_ref(
        &variables["PNS_WEBHOOK_FUNCTION"],
        "WebhookFunction.Version"
    ));
    assert!(
        hook.get("DeploymentPreference").is_none(),
        "the hook is not shifted itself"
    );
    // The API's routes are SAM events, which SAM points at the alias; the queue's and the
    // streams' mappings name the alias themselves.
    for event in webhook["Events"].as_mapping().unwrap().values() {
        assert_eq!(event["Type"], "HttpApi");
    }
    let archiver = &resource(&t, "ArchiverEventSourceMapping");
    assert!(is_ref(&archiver["FunctionName"], "ArchiverFunction.Alias"));
}

/// Days as the template sets them: a parameter's name, or a literal.
fn days(v: &Value) -> String {
    match v {
        Value::Tagged(tag) if tag.tag == "Ref" => tag.value.as_str().unwrap().to_owned(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a number of days: {other:?}"),
    }
}

#[test]
fn every_store_of_personal_data_expires() {
    let t = template();
    let parameter_default = |name: &str| -> u64 {
        let p = &t["Parameters"][name];
        assert!(p.is_mapping(), "no parameter {name}");
        p["Default"].as_u64().unwrap()
    };
    // The tables: TTL on expiresAt, which the webhook sets from RetentionDays.
    for table in ["CallsTable", "BindingErrorsTable"] {
        let ttl = &resource(&t, table)["TimeToLiveSpecification"];
        assert_eq!(ttl["AttributeName"], "expiresAt", "{table}");
        assert_eq!(ttl["Enabled"], true, "{table}");
    }
    let webhook = &resource(&t, "WebhookFunction")["Environment"]["Variables"];
    assert!(is_ref(&webhook["PNS_RETENTION_DAYS"], "RetentionDays"));
    assert!(parameter_default("RetentionDays") > 0, "a finite default");

    // The bucket: every prefix the code writes personal data under has an expiry, and so do
    // the versions an expiry or a deletion leaves behind.
    let bucket = resource(&t, "RecordingBucket");
    let rules = as_list(&bucket["LifecycleConfiguration"]["Rules"]);
    let rules: Vec<&Value> = rules
        .into_iter()
        .filter(|r| r.get("Status").is_some_and(|s| s == "Enabled"))
        .collect();
    let expiry = |prefix: &str| -> String {
        let rule = rules
            .iter()
            .find(|r| r["Prefix"] == prefix && r.get("ExpirationInDays").is_some())
            .unwrap_or_else(|| panic!("no expiry for {prefix}"));
        days(&rule["ExpirationInDays"])
    };
    use pns_cdr::domain::numbers::NUMBER_INDEX_PREFIX;
    use pns_cdr::domain::recording::{
        CONFLICTS_PREFIX, LAKE_PREFIX, RECORDINGS_PREFIX, REJECTED_PREFIX,
    };
    let lake_root = format!("{}/", LAKE_PREFIX.split('/').next().unwrap());
    for (prefix, parameter) in [
        (RECORDINGS_PREFIX, "RecordingRetentionDays"),
        (REJECTED_PREFIX, "BodyRetentionDays"),
        (CONFLICTS_PREFIX, "BodyRetentionDays"),
        (NUMBER_INDEX_PREFIX, "BodyRetentionDays"),
        (lake_root.as_str(), "LakeRetentionDays"),
        ("analytics-errors/", "LakeRetentionDays"),
    ] {
        assert_eq!(expiry(prefix), parameter, "{prefix}");
        assert!(parameter_default(parameter) > 0);
    }
    assert_eq!(expiry("athena-results/"), "30");
    let noncurrent = rules
        .iter()
        .find(|r| r.get("NoncurrentVersionExpiration").is_some())
        .expect("noncurrent versions expire");
    assert!(noncurrent.get("Prefix").is_none(), "for the whole bucket");
    assert_eq!(
        days(&noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"]),
        "DeletedObjectDays"
    );
    // Firehose writes only under the lake's prefixes.
    let delivery = &resource(&t, "LakeDeliveryStream")["ExtendedS3DestinationConfiguration"];
    assert!(delivery["Prefix"].as_str().unwrap().starts_with(&lake_root));
    assert!(delivery["ErrorOutputPrefix"]
        .as_str()
        .unwrap()
        .starts_with("analytics-errors/"));

    // The event archive, the logs and the queues.
    assert!(is_ref(
        &resource(&t, "EventArchive")["RetentionDays"],
        "EventArchiveDays"
    ));
    for (name, group) in resources_of_type(&t, "AWS::Logs::LogGroup") {
        assert!(
            is_ref(&group["Properties"]["RetentionInDays"], "LogRetentionDays"),
            "{name}"
        );
    }
    for (name, queue) in resources_of_type(&t, "AWS::SQS::Queue") {
        assert!(
            queue["Properties"].get("MessageRetentionPeriod").is_some(),
            "{name}"
        );
    }
    // Full numbers never reach the lake, whose files cannot be erased row by row.
    let rule = &t["Rules"]["NoFullNumbersInTheLake"];
    assert!(mentions(rule, "PhoneNumbersInEvents") && mentions(rule, "full"));
}
