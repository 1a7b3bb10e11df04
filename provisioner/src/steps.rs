//! The steps of an attempt after the lock, run in the order `Step::plan`
//! gives; each completed step is recorded in the journal. At shutdown no
//! new step starts.

use std::time::Duration;

use mco_core::provisioning::PROVISIONING_COLLECTIVE;
use mco_core::Status as WireStatus;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tracing::debug;

use crate::calls::{Heed, On};
use crate::classify::Classification;
use crate::masters::Master;
use crate::service::{now, Provisioner};
use crate::state::Record;
use crate::step::{Fail, Outcome, Step, Stopped};

/// What earlier steps found out for later ones.
#[derive(Default)]
struct Found {
    facts: Map<String, Value>,
    classification: Option<Classification>,
    master: Option<Master>,
    restart_delay: Duration,
}

impl Provisioner {
    /// Every step of the plan after the lock, in order.
    pub(crate) async fn steps(
        &self,
        node: &str,
        facts: Option<Map<String, Value>>,
        rec: &mut Record,
    ) -> Result<(), Stopped> {
        let mut found = Found::default();
        let announced = facts;
        for step in Step::plan(&self.cfg.steps) {
            if self.closing() {
                return Err(Stopped::at(step, Outcome::Interrupted));
            }
            let t = Instant::now();
            self.step(node, step, rec, &mut found, announced.as_ref())
                .await
                .map_err(|o| Stopped::at(step, o))?;
            self.metrics.step(step.name(), t.elapsed());
            if !matches!(step, Step::Inventory | Step::Expected | Step::PickMaster) {
                rec.step = Some(step);
                rec.updated_ms = now();
                self.save(node, rec, false)
                    .await
                    .map_err(|e| Stopped::at(step, Outcome::Failed(e)))?;
            }
        }
        Ok(())
    }

    /// One step.
    async fn step(
        &self,
        node: &str,
        step: Step,
        rec: &mut Record,
        found: &mut Found,
        announced: Option<&Map<String, Value>>,
    ) -> Result<(), Outcome> {
        match step {
            Step::Inventory => {
                found.facts = match announced {
                    Some(f) => f.clone(),
                    None => {
                        let inv = self
                            .ask(
                                On::Provisioning,
                                node,
                                "rpcutil",
                                "inventory",
                                Map::new(),
                                None,
                            )
                            .await?;
                        inv.get("facts")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default()
                    }
                };
            }
            Step::Expected => {
                found.classification = self.check_expected(node, Some(&found.facts)).await?;
                self.check_not_reserved(node).await?;
            }
            Step::PickMaster => {
                let (master, reason) = self.pick(&found.facts).await?;
                debug!(node, master = %master.identity, ?reason, "master picked");
                rec.master = Some(self.master_name(&master));
                found.master = Some(master);
            }
            Step::SetMaster => {
                let master = found.master.as_ref().ok_or_else(no_master)?;
                let address = master
                    .facts
                    .get(&self.cfg.masters.address_fact)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if address.is_empty() {
                    return Err(Outcome::Failed(format!(
                        "master {} has no {} fact for the hosts file",
                        master.identity, self.cfg.masters.address_fact
                    )));
                }
                let name = self.master_name(master);
                self.provision(
                    node,
                    "set_master",
                    json!({"name": name, "address": address}),
                )
                .await?;
            }
            Step::Sign => self.sign(node, rec).await?,
            Step::Configure => {
                let master = found.master.as_ref().ok_or_else(no_master)?;
                let input = self
                    .configure_input(node, rec, master, found.classification.as_ref())
                    .await;
                self.provision(node, "configure", input).await?;
            }
            Step::Bootstrap | Step::FinalRun => {
                if step == Step::Bootstrap {
                    // The lock must outlast the run.
                    self.lock(node, self.cfg.run_timeout + self.cfg.lock_expiry)
                        .await?;
                }
                let input = if step == Step::FinalRun {
                    json!({"phase": "final"})
                } else {
                    json!({})
                };
                self.run_bootstrap(node, input)
                    .await
                    .map_err(Outcome::Failed)?;
            }
            Step::Restart => {
                let r = self.provision(node, "restart", json!({})).await?;
                found.restart_delay =
                    Duration::from_millis(r.get("delay_ms").and_then(Value::as_u64).unwrap_or(0))
                        .min(self.cfg.confirm_timeout);
            }
            Step::Confirm => {
                // Not before the node's own splay is over.
                tokio::time::sleep(found.restart_delay).await;
                self.confirm(node).await?;
            }
            Step::Lock | Step::Journal | Step::Signing => {}
        }
        Ok(())
    }

    /// `configure`'s input: the certificate, the CA and its CRL, the brokers
    /// and collectives, and the node's classification.
    async fn configure_input(
        &self,
        node: &str,
        rec: &Record,
        master: &Master,
        classification: Option<&Classification>,
    ) -> Value {
        let crl = self
            .ca_call("crl", Map::new())
            .await
            .ok()
            .and_then(|d| d.get("crl").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let servers = self.servers_for(master);
        let collectives = if self.cfg.node_collectives.is_empty() {
            vec![self.main_cfg.collective.clone()]
        } else {
            self.cfg.node_collectives.clone()
        };
        let mut input = json!({
            "certificate": rec.certificate.clone().unwrap_or_default(),
            "ca": self.ca_pem,
            "servers": servers.join(","),
            "collectives": collectives.join(","),
            "identity": node,
        });
        if !crl.is_empty() {
            input["crl"] = Value::String(crl);
        }
        if let Some(c) = classification {
            input["classification"] = Value::String(c.to_json());
        }
        input
    }

    /// Step 5 and 6: a CSR from the node, old certificates cleaned, a certificate signed once.
    async fn sign(&self, node: &str, rec: &mut Record) -> Result<(), Outcome> {
        let g = self.provision(node, "gencsr", json!({})).await?;
        let csr = g.get("csr").and_then(Value::as_str).unwrap_or_default();
        let key = g
            .get("public_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let want = format!("node:{node}");
        let (cn, csr_key) = mco_pki::inspect_csr(csr)
            .map_err(|e| Outcome::Refused(format!("its CSR does not parse: {e}")))?;
        if cn != want {
            return Err(Outcome::Refused(format!(
                "its CSR asks for {cn:?}, not {want}; not signed"
            )));
        }
        // The certificate is for the key the node signs its replies with,
        // pinned when it was first heard from; no other key is signed.
        let pinned = self.pins.get(node).map(hex::encode).unwrap_or_default();
        if csr_key != pinned || csr_key != key {
            return Err(Outcome::Refused(format!(
                "its CSR carries key {csr_key}, not the key {pinned} its replies are signed with; not signed"
            )));
        }
        let ours = rec.csr_key.as_deref() == Some(key);
        if ours && rec.certificate.is_some() {
            // Signed in an earlier attempt: reused, never signed again.
            return Ok(());
        }
        if !ours {
            rec.certificate = None;
            if self.cfg.steps.clean {
                self.clean(node).await?;
            }
            // From here on a certificate for this key is ours; recorded
            // before asking, so that a resumed run does not clean it away.
            rec.csr_key = Some(key.to_string());
            rec.step = Some(Step::Signing);
            self.save(node, rec, true).await.map_err(Outcome::Failed)?;
        }
        let signed = self
            .ca_call(
                "sign",
                json!({"name": want, "csr": csr})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .await?;
        let cert = signed
            .get("certificate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if cert.is_empty() {
            return Err(Outcome::Failed("the CA returned no certificate".into()));
        }
        rec.certificate = Some(cert);
        self.save(node, rec, true).await.map_err(Outcome::Failed)
    }

    /// Cleans `node`'s old certificates on the CA and every master hosting `ca`.
    async fn clean(&self, node: &str) -> Result<(), Outcome> {
        let input = json!({"name": node})
            .as_object()
            .cloned()
            .unwrap_or_default();
        self.ca_call("clean", input.clone()).await?;
        let (masters, ca) = {
            let m = self.masters_now().await?;
            (m.0, m.1)
        };
        for m in masters.iter() {
            if Some(&m.identity) == ca.as_ref() || !m.agents.iter().any(|a| a == "ca") {
                continue;
            }
            self.ask_heeding(
                On::Main,
                &m.identity,
                "ca",
                "clean",
                input.clone(),
                None,
                Heed::Refusal,
            )
            .await
            .map_err(|f| match f {
                Fail::Refused(msg) => {
                    Outcome::Refused(format!("{} refuses clean: {msg}", m.identity))
                }
                f => Outcome::Failed(format!("clean on {}: {f}", m.identity)),
            })?;
        }
        Ok(())
    }

    /// `provision run` (the bootstrap command), with its output's last lines on failure.
    async fn run_bootstrap(&self, node: &str, input: Value) -> Result<(), String> {
        let mut data = input.as_object().cloned().unwrap_or_default();
        data.insert("token".into(), Value::String(self.token.clone()));
        let reply = self
            .reply(
                &self.prov,
                PROVISIONING_COLLECTIVE,
                node,
                "provision",
                "run",
                data,
                self.cfg.run_timeout,
            )
            .await
            .map_err(|f| f.to_string())?;
        let summary = reply
            .data
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if reply.status == WireStatus::Ok
            && reply.data.get("skipped").and_then(Value::as_bool) == Some(true)
        {
            return Ok(());
        }
        if reply.status == WireStatus::Ok
            && reply.data.get("success").and_then(Value::as_bool) == Some(true)
        {
            return Ok(());
        }
        let output = reply
            .data
            .get("output")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let tail: String = {
            let lines: Vec<&str> = output.lines().collect();
            lines[lines.len().saturating_sub(5)..].join(" | ")
        };
        Err(format!(
            "{} (exit code {}): {tail}",
            if summary.is_empty() {
                reply.message.as_str()
            } else {
                summary
            },
            reply.data.get("exitcode").cloned().unwrap_or(Value::Null)
        ))
    }

    /// Waits for the node to answer in the main collective. A ping sent
    /// before the node is back is lost, so the first pings wait 250 ms each
    /// and are sent again; after two seconds each waits longer (up to 2 s),
    /// so a node on a loaded machine still gets time to answer.
    pub(crate) async fn confirm(&self, node: &str) -> Result<(), Outcome> {
        let deadline = Instant::now() + self.cfg.confirm_timeout;
        let mut last = String::from("no reply");
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        while Instant::now() < deadline {
            let left = deadline - Instant::now();
            let asked = Instant::now();
            match self
                .ask(
                    On::Main,
                    node,
                    "rpcutil",
                    "ping",
                    Map::new(),
                    Some(left.min(wait)),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(f) => last = f.to_string(),
            }
            if started.elapsed() >= Duration::from_secs(2) {
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            // A ping refused at once (not yet connected) is not retried in a loop.
            let pause = Duration::from_millis(50).saturating_sub(asked.elapsed());
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
        Err(Outcome::Failed(format!(
            "it did not answer in the {} collective within {:?} ({last})",
            self.main_cfg.collective, self.cfg.confirm_timeout
        )))
    }
}

fn no_master() -> Outcome {
    Outcome::Failed("no master was picked".into())
}
