//! The whole system on one machine: the embedded AWS emulator, the webhook on
//! `http://127.0.0.1:3000/pns/call-result`, the archiver draining the queue as Lambda's event
//! source would, the publisher reading the tables' streams onto the emulator's event bus, the
//! lake filled from the bus, and a fake NXCLOUD recording host. Same handler code as on Lambda.

pub mod demo;
pub mod emulator;
pub mod fake_nxcloud;
pub mod fault_proxy;
pub mod invoke;
pub mod lake;
pub mod poller;
pub mod resources;
pub mod runtime_api;
pub mod server;
pub mod streams;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use emulator::{Emulator, Queues, ResourceNames};
use fake_nxcloud::FakeNxcloud;
use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::dynamodb::{DynamoBindingErrorStore, DynamoRecordStore};
use pns_cdr::adapters::eventbridge::EventBridgeBus;
use pns_cdr::adapters::http_source::{HttpRecordingSource, HttpTimeouts, Lookup, SystemLookup};
use pns_cdr::adapters::s3::S3ObjectStore;
use pns_cdr::adapters::secrets::{
    number_keys, NumberKeyError, SecretError, SecretTokens, SecretsManagerSecret,
};
use pns_cdr::adapters::sqs::{SqsEventFailures, SqsJobQueue};
use pns_cdr::config::SecretSource;
use pns_cdr::domain::url_policy::{HostListError, UrlPolicy, UrlProfile, DEFAULT_RECORDING_HOSTS};
use pns_cdr::handlers::archiver::{Archiver, ArchiverSettings};
use pns_cdr::handlers::publisher::{Publisher, PublisherSettings};
use pns_cdr::handlers::reconciler::{Reconciler, ReconcilerSettings};
use pns_cdr::handlers::webhook::{
    Webhook, WebhookSettings, BINDING_ERROR_ROUTE, CALL_RESULT_ROUTE,
};
use pns_cdr::telemetry::ErrorChain;
use resources::{create_downstream, create_resources, create_secret, Downstream, Template};

/// The token `make run` accepts.
pub const LOCAL_TOKEN: &str = "local-dev-token";
/// The local stack's number key (the template generates a random one).
pub const LOCAL_NUMBER_KEY: &str = "local-number-key-0123456789abcdef0123456789";

/// The webhook service as the local stack and the Lambda wire it.
pub type LocalWebhook =
    Webhook<DynamoRecordStore, SqsJobQueue, S3ObjectStore, DynamoBindingErrorStore>;
/// The archiver service as the local stack and the Lambda wire it.
pub type LocalArchiver =
    Archiver<DynamoRecordStore, SqsJobQueue, S3ObjectStore, HttpRecordingSource>;

/// The reconciler as the local stack and the Lambda wire it.
pub type LocalReconciler = Reconciler<DynamoRecordStore, SqsJobQueue>;

/// The publisher as the local stack and the Lambda wire it.
pub type LocalPublisher = Publisher<EventBridgeBus, SqsEventFailures>;

/// How often `make run` runs the reconciler (the template schedules it every 15 minutes).
pub const LOCAL_RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// How to start the local stack.
pub struct LocalOptions {
    /// Use this emulator (or LocalStack) instead of starting one.
    pub endpoint_url: Option<String>,
    /// Port of the emulator this stack starts (0 = any free port).
    pub emulator_port: u16,
    pub webhook_port: u16,
    pub recordings_port: u16,
    pub names: ResourceNames,
    /// `current[,previous]`.
    pub tokens: String,
    pub recording_hosts: String,
    pub archiver: ArchiverSettings,
    pub webhook: WebhookSettings,
    pub reconciler: ReconcilerSettings,
    /// Name resolution for recording hosts (tests map names to chosen addresses).
    pub lookup: Arc<dyn Lookup>,
    /// Drain the recording queue in the background, as the SQS event source does.
    pub drain: bool,
    /// Replaces the queue's visibility timeout (the template's: 6 × the archiver's timeout).
    pub visibility_timeout_seconds: Option<u32>,
    /// The archiver invocation's time limit, as Lambda's deadline.
    pub function_timeout: Duration,
    /// How often the background reconciler runs (with `drain`).
    pub reconcile_every: Duration,
    /// The recording download's timeouts.
    pub http_timeouts: HttpTimeouts,
    /// Archivers draining the queue at once (the template reserves `ArchiverConcurrency`).
    pub pollers: usize,
    /// Read the tables' streams into events, and the bus into the lake, in the background.
    pub events: bool,
    /// Answer 429 past the template's stage throttle (`ApiThrottleRate`, `ApiThrottleBurst`),
    /// as API Gateway does. Off for loads that measure or prove something else.
    pub throttle: bool,
    pub publisher: PublisherSettings,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            emulator_port: 4566,
            webhook_port: 3000,
            recordings_port: 4567,
            names: ResourceNames::default(),
            tokens: LOCAL_TOKEN.into(),
            recording_hosts: DEFAULT_RECORDING_HOSTS.into(),
            archiver: ArchiverSettings {
                // Locally a retry should be seen, not waited for.
                backoff_base: Duration::from_secs(2),
                max_backoff: Duration::from_secs(30),
                ..ArchiverSettings::default()
            },
            webhook: WebhookSettings::default(),
            reconciler: ReconcilerSettings {
                requeue_after: Duration::from_secs(120),
                ..ReconcilerSettings::default()
            },
            lookup: Arc::new(SystemLookup),
            drain: true,
            visibility_timeout_seconds: None,
            function_timeout: poller::FUNCTION_TIMEOUT,
            reconcile_every: LOCAL_RECONCILE_EVERY,
            http_timeouts: HttpTimeouts::default(),
            pollers: 1,
            events: true,
            throttle: true,
            publisher: PublisherSettings::default(),
        }
    }
}

/// Errors starting the local stack.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] pns_cdr::adapters::tls::TlsError),
    #[error("invalid recording host allow-list")]
    RecordingHosts(#[source] HostListError),
    #[error("invalid local webhook tokens")]
    Tokens(#[from] SecretError),
    #[error("the local number key")]
    NumberKey(#[from] NumberKeyError),
    #[error("reading the table failed: {0}")]
    Read(String),
}

/// Messages in a queue: (waiting, in flight), as SQS approximates them.
pub async fn queue_counts(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<(u64, u64), aws_sdk_sqs::Error> {
    use aws_sdk_sqs::types::QueueAttributeName::{
        ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
    };
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    let count = |name| attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((
        count(ApproximateNumberOfMessages),
        count(ApproximateNumberOfMessagesNotVisible),
    ))
}

/// A running local stack; everything stops when it is dropped.
pub struct LocalStack {
    _emulator: Option<Emulator>,
    pub endpoint: String,
    pub clients: AwsClients,
    pub names: ResourceNames,
    pub queues: Queues,
    /// `http://127.0.0.1:<port>/pns/call-result` (without the token).
    pub webhook_url: String,
    /// `http://127.0.0.1:<port>/pns/binding-error` (without the token).
    pub binding_error_url: String,
    pub recordings: FakeNxcloud,
    pub archiver: Arc<LocalArchiver>,
    /// The archiver's own SQS client: what the SQS event source polls with.
    archiver_sqs: aws_sdk_sqs::Client,
    pub reconciler: Arc<LocalReconciler>,
    pub publisher: Arc<LocalPublisher>,
    /// The tables' streams and the queues around the publisher and the lake.
    pub downstream: Downstream,
    function_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalStack {
    pub async fn start(options: LocalOptions) -> Result<Self, LocalError> {
        let (emulator, endpoint) = match options.endpoint_url {
            Some(url) => (None, url),
            None => {
                let port = options.emulator_port;
                let emulator = tokio::task::spawn_blocking(move || Emulator::start(port))
                    .await
                    .expect("emulator start does not panic")?;
                let endpoint = emulator.endpoint.clone();
                (Some(emulator), endpoint)
            }
        };
        // Each function signs as itself, as each has its own role when deployed: the
        // emulator records who called what, for the IAM check. The harness is "harness".
        let caller = |name| AwsClients::for_caller(&endpoint, name);
        let clients = caller("harness").await?;
        let template = Template::repo()?;
        let queues = create_resources(
            &template,
            &clients,
            &options.names,
            options.visibility_timeout_seconds,
        )
        .await?;
        let names = &options.names;
        let secret = create_secret(
            &template,
            &clients,
            "WebhookTokenSecret",
            &names.secret,
            &options.tokens,
        )
        .await?;
        create_secret(
            &template,
            &clients,
            "NumberKeySecret",
            &names.number_key_secret,
            LOCAL_NUMBER_KEY,
        )
        .await?;
        let downstream = create_downstream(&template, &clients, &options.names).await?;
        let policy = UrlPolicy::new(&options.recording_hosts, UrlProfile::Local)
            .map_err(LocalError::RecordingHosts)?;

        let functions = caller("webhook").await?;
        // As deployed: the tokens come from the secret.
        let tokens = SecretTokens::new(
            SecretsManagerSecret::new(functions.secrets.clone(), secret),
            "",
        );
        let auth = tokens.authenticator().await?;
        // As deployed, each function reads the number key from its secret at start.
        let key_source = SecretSource::Secret(names.number_key_secret.clone());
        let mut webhook_settings = options.webhook.clone();
        webhook_settings.number_keys = Some(number_keys(&key_source, &functions.secrets).await?);
        let webhook = Arc::new(Webhook {
            store: DynamoRecordStore::new(functions.dynamodb.clone(), &options.names.table),
            queue: SqsJobQueue::new(functions.sqs, &queues.queue_url),
            objects: S3ObjectStore::new(functions.s3, &options.names.bucket),
            bindings: DynamoBindingErrorStore::new(
                functions.dynamodb,
                &options.names.binding_errors_table,
            ),
            auth: auth.into(),
            policy: policy.clone(),
            settings: webhook_settings,
        });
        // Lambda's SQS event source polls with the archiver's role: so do the pollers.
        let archiver_clients = caller("archiver").await?;
        let archiver = Arc::new(Archiver {
            store: DynamoRecordStore::new(archiver_clients.dynamodb.clone(), &options.names.table),
            queue: SqsJobQueue::new(archiver_clients.sqs.clone(), &queues.queue_url),
            objects: S3ObjectStore::new(archiver_clients.s3.clone(), &options.names.bucket),
            source: HttpRecordingSource::with_lookup(
                policy,
                options.http_timeouts,
                options.lookup.clone(),
                pns_cdr::adapters::tls::client_config()?,
            ),
            settings: options.archiver.clone(),
        });

        let functions = caller("reconciler").await?;
        let reconciler = Arc::new(Reconciler {
            pending: DynamoRecordStore::new(functions.dynamodb, &options.names.table),
            queue: SqsJobQueue::new(functions.sqs, &queues.queue_url),
            settings: options.reconciler.clone(),
        });

        // Lambda's DynamoDB event source reads the streams with the publisher's role.
        let publisher_clients = caller("publisher").await?;
        let mut publisher_settings = options.publisher.clone();
        publisher_settings.number_keys =
            Some(number_keys(&key_source, &publisher_clients.secrets).await?);
        let publisher = Arc::new(Publisher {
            bus: EventBridgeBus::new(publisher_clients.events(), &options.names.event_bus),
            failures: SqsEventFailures::new(
                publisher_clients.sqs.clone(),
                &downstream.publisher_failures_url,
            ),
            settings: publisher_settings,
        });

        let bind = |port: u16| async move {
            TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|source| LocalError::Bind { port, source })
        };
        let listener = bind(options.webhook_port).await?;
        let address = listener.local_addr().expect("bound");
        let webhook_url = format!("http://{address}{CALL_RESULT_ROUTE}");
        let binding_error_url = format!("http://{address}{BINDING_ERROR_ROUTE}");
        let recordings = FakeNxcloud::start(options.recordings_port)
            .await
            .map_err(|source| LocalError::Bind {
                port: options.recordings_port,
                source,
            })?;

        // API Gateway's stage throttle, at the template's default rate and burst.
        let throttle = match options.throttle {
            true => Some(Arc::new(throttle::TokenBucket::from_template(
                &template, 1.0,
            )?)),
            false => None,
        };
        let mut tasks = vec![tokio::spawn(server::serve(listener, webhook, throttle))];
        if options.drain {
            tasks.extend(poller::spawn_drains(
                options.pollers,
                &archiver_clients.sqs,
                &queues.queue_url,
                &archiver,
                options.function_timeout,
            ));
            let reconciler = reconciler.clone();
            let every = options.reconcile_every;
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = reconciler.run(time::OffsetDateTime::now_utc()).await {
                        tracing::warn!(error = %ErrorChain(&e), "reconciler run failed");
                    }
                }
            }));
        }
        if options.events {
            let streams = aws_sdk_dynamodbstreams::Client::new(&publisher_clients.config);
            let mapping = template.properties("PublisherCallsStream")?;
            for stream_arn in [&downstream.calls_stream, &downstream.binding_errors_stream] {
                tasks.push(tokio::spawn(streams::drain(
                    streams.clone(),
                    publisher_clients.sqs.clone(),
                    publisher.clone(),
                    streams::Mapping {
                        stream_arn: stream_arn.clone(),
                        batch_size: mapping["BatchSize"].as_i64().unwrap_or(100) as i32,
                        max_retries: mapping["MaximumRetryAttempts"].as_u64().unwrap_or(10) as u32,
                        pause: Duration::from_millis(250),
                        failure_queue_url: downstream.publisher_failures_url.clone(),
                    },
                )));
            }
            // Firehose writes with its own role: "firehose" to the IAM check, not a function.
            let firehose = caller("firehose").await?;
            tasks.push(tokio::spawn(lake::deliver(
                firehose.sqs,
                firehose.s3,
                downstream.lake_queue_url.clone(),
                options.names.bucket.clone(),
            )));
        }
        Ok(Self {
            _emulator: emulator,
            endpoint,
            clients,
            names: options.names,
            queues,
            webhook_url,
            binding_error_url,
            recordings,
            archiver,
            archiver_sqs: archiver_clients.sqs,
            reconciler,
            publisher,
            downstream,
            function_timeout: options.function_timeout,
            tasks,
        })
    }

    /// Every item in the calls table as JSON, by id (one scan page: the local table is small).
    pub async fn items(&self) -> Result<Vec<serde_json::Value>, LocalError> {
        let mut items = self.scan(&self.names.table).await?;
        items.sort_by_key(|i| i["id"].as_i64());
        Ok(items)
    }

    /// Every item in the binding-error table as JSON, by `requestId`.
    pub async fn binding_errors(&self) -> Result<Vec<serde_json::Value>, LocalError> {
        let mut items = self.scan(&self.names.binding_errors_table).await?;
        items.sort_by(|a, b| a["requestId"].as_str().cmp(&b["requestId"].as_str()));
        Ok(items)
    }

    /// One scan page of `table`, as JSON.
    async fn scan(&self, table: &str) -> Result<Vec<serde_json::Value>, LocalError> {
        let scan = self
            .clients
            .dynamodb
            .scan()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                LocalError::Read(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
            })?;
        scan.items
            .unwrap_or_default()
            .into_iter()
            .map(serde_dynamo::from_item)
            .collect::<Result<Vec<serde_json::Value>, _>>()
            .map_err(|e| LocalError::Read(e.to_string()))
    }

    /// The calls table as the harness writes to it (tests seed records with it: as the
    /// harness, so the IAM check never counts a seed as a function's call).
    pub fn record_store(&self) -> DynamoRecordStore {
        DynamoRecordStore::new(self.clients.dynamodb.clone(), &self.names.table)
    }

    /// The stack's resources, as the simulator's verification reads them.
    pub fn target(&self) -> crate::sim::Target {
        crate::sim::Target {
            clients: self.clients.clone(),
            table: self.names.table.clone(),
            binding_errors_table: self.names.binding_errors_table.clone(),
            queue_url: self.queues.queue_url.clone(),
            dead_letter_queue_url: self.queues.dead_letter_queue_url.clone(),
            bucket: self.names.bucket.clone(),
        }
    }

    /// Runs one receive → archiver → delete round (tests drive the queue step by step).
    pub async fn poll_once(&self) -> Result<usize, aws_sdk_sqs::Error> {
        poller::poll_once(
            &self.archiver_sqs,
            &self.queues.queue_url,
            &self.archiver,
            self.function_timeout,
        )
        .await
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
