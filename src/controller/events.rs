//! Kubernetes events (`events.k8s.io/v1`), published without a cache. kube's `Recorder`
//! keeps every event it published for six minutes, to count repeats into a series; the
//! controller publishes an event only when something changes (a transition of `Ready`, a
//! rollout's step, a deletion), so there are no repeats to count, and at 10,000 packages
//! that cache was megabytes held for nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

use super::decide::Note;

/// Publishes events on behalf of one controller instance.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
}

impl Publisher {
    /// A publisher for `controller` (the reporting controller's name).
    pub fn new(client: Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: controller.to_string(),
        }
    }

    /// Publishes one event about `regarding`; a failure is the caller's to log.
    pub async fn publish(&self, n: &Note, regarding: &ObjectReference) -> kube::Result<()> {
        let ns = regarding.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), &self.event(n, regarding))
            .await
            .map(drop)
    }

    fn event(&self, n: &Note, regarding: &ObjectReference) -> Event {
        let now = jiff::Timestamp::now();
        Event {
            action: Some(n.action.to_string()),
            reason: Some(n.reason.clone()),
            note: Some(n.note.clone()),
            type_: Some(if n.warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                // Unique per object and instant, as kube names them.
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}
