//! `--stack NAME`: a deployed stack's resources, read from its CloudFormation outputs and
//! parameters instead of from environment variables.

use aws_sdk_cloudformation::Client;
use pns_cdr::config::{OpsConfig, QueueRef};

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("cannot describe stack {stack} (cloudformation:DescribeStacks, in AWS_REGION)")]
    Describe {
        stack: String,
        #[source]
        source: Box<aws_sdk_cloudformation::Error>,
    },
    #[error("stack {stack} has no output {output}: is it a pns-cdr stack, fully deployed?")]
    Missing { stack: String, output: &'static str },
}

/// The settings of `stack`, over `config`: every resource name the stack's outputs give, the
/// phone-number mode of its parameters.
pub async fn apply(client: &Client, stack: &str, config: &mut OpsConfig) -> Result<(), StackError> {
    let out = client
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| StackError::Describe {
            stack: stack.to_owned(),
            source: Box::new(e.into()),
        })?;
    let Some(described) = out.stacks().first() else {
        return Err(StackError::Missing {
            stack: stack.to_owned(),
            output: "(the stack itself)",
        });
    };
    let output = |name: &'static str| {
        (described.outputs())
            .iter()
            .find(|o| o.output_key() == Some(name))
            .and_then(|o| o.output_value().map(str::to_owned))
            .ok_or(StackError::Missing {
                stack: stack.to_owned(),
                output: name,
            })
    };
    config.table = output("CallsTableName")?;
    config.binding_errors_table = output("BindingErrorsTableName")?;
    config.queue = QueueRef::Url(output("RecordingQueueUrl")?);
    config.dead_letter_queue = QueueRef::Url(output("RecordingDeadLetterQueueUrl")?);
    config.bucket = output("RecordingBucketName")?;
    config.event_bus = output("EventBusName")?;
    config.webhook_url = Some(output("WebhookUrl")?);
    config.token_secret = Some(output("WebhookTokenSecretArn")?);
    config.number_key_secret = Some(output("NumberKeySecretArn")?);
    let phones = (described.parameters().iter())
        .find(|p| p.parameter_key() == Some("PhoneNumbersInEvents"))
        .and_then(|p| p.parameter_value().map(str::to_owned));
    // The default the template gives when the parameter was never set.
    config.phone_numbers = Some(phones.unwrap_or_else(|| "masked".into()));
    Ok(())
}
