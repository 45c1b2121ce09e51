//! Stakeholder notifications: [`Webhook`] posts a Slack-compatible JSON body.

use std::sync::Mutex;

use async_trait::async_trait;
use flowfail_core::report::mrkdwn_escape;
use flowfail_core::{Delivery, Notification, Notifier, Result};
use secrecy::{ExposeSecret, SecretString};

use crate::client::{Http, HttpOptions, cut};
use crate::recent::{CAPACITY, Recent};

/// A JSON webhook (Slack-compatible body: `{"text": …}`). The URL is a secret: chat webhook
/// URLs carry their token. The text is escaped for Slack's mrkdwn
/// ([`flowfail_core::report::mrkdwn_escape`]): no `<!channel>`, mention or link can be formed
/// from what a notification carries.
///
/// A notification whose dedup key was already sent by this process is not sent again
/// ([`Delivery::Deduplicated`]). The last [`Webhook::REMEMBERED`] keys used are remembered;
/// an older one is forgotten, and its notification would be sent again.
#[derive(Debug)]
pub struct Webhook {
    http: Http,
    url: SecretString,
    sent: Mutex<Recent<()>>,
}

impl Webhook {
    /// A webhook at `url`.
    pub fn new(url: SecretString, opts: HttpOptions) -> Result<Self> {
        Ok(Webhook {
            http: Http::new(opts)?,
            url,
            sent: Mutex::new(Recent::new(CAPACITY)),
        })
    }

    /// How many dedup keys are remembered, the least recently used forgotten first.
    pub const REMEMBERED: usize = CAPACITY;

    /// How many dedup keys are remembered now (at most [`Webhook::REMEMBERED`]).
    #[doc(hidden)]
    pub fn remembered(&self) -> usize {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[async_trait]
impl Notifier for Webhook {
    async fn notify(&self, n: &Notification) -> Result<Delivery> {
        if self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n.dedup_key)
            .is_some()
        {
            return Ok(Delivery::Deduplicated);
        }
        // Every string in the text is escaped for mrkdwn: nothing in it can mention a channel,
        // form a link or reference a user.
        let body = serde_json::json!({
            "text": format!(
                "[{}] {}",
                mrkdwn_escape(&n.audience),
                mrkdwn_escape(&cut(&n.message, 3000))
            ),
            "audience": n.audience,
            "dedup_key": n.dedup_key,
        });
        let url = self.url.expose_secret().to_owned();
        let r = self
            .http
            .send("notifier.notify", |c| c.post(&url).json(&body))
            .await?;
        if !(200..300).contains(&r.status) {
            return Err(self.http.status_err("notifier.notify", &r));
        }
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n.dedup_key.clone(), ());
        Ok(Delivery::Sent)
    }
}
