//! CodeDeploy, as a deployment's lifecycle hook reports to it.

use aws_sdk_codedeploy::types::LifecycleEventStatus;
use aws_sdk_codedeploy::Client;

use crate::ports::{DeploymentHooks, LifecycleHook, PortError};

#[derive(Clone, Debug)]
pub struct CodeDeployHooks {
    client: Client,
}

impl CodeDeployHooks {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl DeploymentHooks for CodeDeployHooks {
    async fn report(&self, hook: &LifecycleHook, passed: bool) -> Result<(), PortError> {
        let status = match passed {
            true => LifecycleEventStatus::Succeeded,
            false => LifecycleEventStatus::Failed,
        };
        self.client
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(&hook.deployment_id)
            .lifecycle_event_hook_execution_id(&hook.lifecycle_event_hook_execution_id)
            .status(status)
            .send()
            .await
            .map_err(|e| PortError::new("PutLifecycleEventHookExecutionStatus", e))?;
        Ok(())
    }
}
