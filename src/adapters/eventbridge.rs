//! The event bus over EventBridge `PutEvents`.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use aws_smithy_types::date_time::{DateTime, Format};

use crate::domain::events::Event;
use crate::ports::{EntryRefused, EventBus, PortError};

/// The stack's custom bus.
#[derive(Clone, Debug)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>) -> Self {
        Self {
            client,
            bus_name: bus_name.into(),
        }
    }
}

impl EventBus for EventBridgeBus {
    async fn put(&self, events: &[&Event]) -> Result<Vec<Result<(), EntryRefused>>, PortError> {
        let entries = events
            .iter()
            .map(|event| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(event.source)
                    .detail_type(event.detail_type.as_str())
                    .detail(serde_json::Value::Object(event.detail.clone()).to_string())
                    // The transition's time; EventBridge uses the put's time without it.
                    .set_time(DateTime::from_str(&event.time, Format::DateTime).ok())
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| PortError::new("PutEvents", e))?;
        let answers = out.entries.unwrap_or_default();
        if answers.len() != events.len() {
            return Err(PortError::new(
                "PutEvents",
                format!("{} answers for {} entries", answers.len(), events.len()),
            ));
        }
        Ok(answers
            .into_iter()
            .map(|answer| match answer.error_code {
                None => Ok(()),
                Some(code) => Err(EntryRefused {
                    code,
                    message: answer.error_message.unwrap_or_default(),
                }),
            })
            .collect())
    }
}
