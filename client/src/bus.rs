//! The client's connection to the bus and the request it builds.

use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use mco_core::config::ClientConfig;
use mco_core::wire::{new_request_id, now_ms, Envelope, Kind, RequestBody};
use mco_core::{subject, Filter};
use serde_json::{Map, Value};

use crate::error::ClientError;

/// A connected client with its caller identity.
pub struct Bus {
    /// The NATS connection.
    pub client: Client,
    /// `user:NAME`.
    pub caller: String,
    /// The sending client's identity.
    pub sender: String,
    /// Message size bound.
    pub max_payload: usize,
    /// Request TTL.
    pub ttl: Duration,
}

impl Bus {
    /// Connects, failing fast with a clear error if no broker answers.
    pub async fn connect(cfg: &ClientConfig) -> Result<Bus, ClientError> {
        let servers = cfg.nats.servers.join(", ");
        let client = ConnectOptions::new()
            .name(format!("mco {}", cfg.identity))
            .connection_timeout(Duration::from_secs(5))
            .subscription_capacity(65_536)
            .connect(cfg.nats.servers.as_slice())
            .await
            .map_err(|e| ClientError::Connect {
                servers,
                message: e.to_string(),
            })?;
        Ok(Bus {
            client,
            caller: format!("user:{}", cfg.identity),
            sender: cfg.identity.clone(),
            max_payload: cfg.nats.max_payload,
            ttl: cfg.ttl,
        })
    }

    /// A new request body.
    pub fn request(
        &self,
        collective: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        filter: Filter,
    ) -> RequestBody {
        RequestBody {
            id: new_request_id(),
            sender: self.sender.clone(),
            caller: self.caller.clone(),
            collective: collective.to_string(),
            agent: agent.to_string(),
            action: action.to_string(),
            data,
            filter,
            ttl_s: self.ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
            time_ms: now_ms(),
        }
    }

    /// The envelope bytes of a request, checked against the size bound.
    pub fn encode(&self, req: &RequestBody) -> Result<bytes::Bytes, ClientError> {
        let bytes = Envelope::unsigned(Kind::Request, req.encode()).encode();
        if bytes.len() > self.max_payload {
            return Err(ClientError::Usage(format!(
                "the request is {} bytes, over the {} byte bound (nats.max_payload)",
                bytes.len(),
                self.max_payload
            )));
        }
        Ok(bytes.into())
    }

    /// Where replies to `req` come back.
    pub fn reply_subject(&self, req: &RequestBody) -> String {
        subject::reply(&req.collective, &self.caller, &req.id)
    }
}
