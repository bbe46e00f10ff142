//! The local stack is built from `template.yaml`, and simulates what the template sets.

use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::domain::item::{BUSINESS_INDEX, CALL_ID_INDEX, PENDING_INDEX};
use pns_cdr_dev::local::emulator::ResourceNames;
use pns_cdr_dev::local::poller::FUNCTION_TIMEOUT;
use pns_cdr_dev::local::resources::{create_resources, Template};

fn template_text() -> String {
    std::fs::read_to_string(pns_cdr_dev::repo_root().join("template.yaml")).unwrap()
}

#[test]
fn the_local_archiver_has_the_templates_timeout() {
    let template = Template::repo().unwrap();
    let timeout = template.properties("ArchiverFunction").unwrap()["Timeout"].as_u64();
    assert_eq!(timeout, Some(FUNCTION_TIMEOUT.as_secs()));
}

/// The local stack is the template's resources: a template with the pending index renamed
/// and a shorter queue visibility builds exactly that.
#[tokio::test]
async fn the_local_stack_is_built_from_the_template() {
    let changed = template_text()
        .replace(PENDING_INDEX, "pendingRecordingsRenamed")
        .replace("VisibilityTimeout: 720", "VisibilityTimeout: 333");
    assert_ne!(changed, template_text(), "the edits apply to template.yaml");
    let endpoint = crate::common::emulator_endpoint();
    let clients = AwsClients::for_caller(&endpoint, "harness").await.unwrap();
    let names = ResourceNames::suffixed(&format!("template-{}", std::process::id()));
    let queues = create_resources(&Template::parse(&changed).unwrap(), &clients, &names, None)
        .await
        .unwrap();

    let table = clients
        .dynamodb
        .describe_table()
        .table_name(&names.table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let indexes: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    assert!(indexes.contains(&"pendingRecordingsRenamed"), "{indexes:?}");
    assert!(!indexes.contains(&PENDING_INDEX), "{indexes:?}");
    for index in [BUSINESS_INDEX, CALL_ID_INDEX] {
        assert!(indexes.contains(&index), "{index} missing from {indexes:?}");
    }

    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&queues.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let attribute = |name| attributes[&aws_sdk_sqs::types::QueueAttributeName::from(name)].clone();
    assert_eq!(attribute("VisibilityTimeout"), "333");
    let redrive: serde_json::Value = serde_json::from_str(&attribute("RedrivePolicy")).unwrap();
    let template = Template::repo().unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].as_u64(),
        template.properties("RecordingQueue").unwrap()["RedrivePolicy"]["maxReceiveCount"].as_u64()
    );
}
