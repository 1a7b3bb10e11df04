//! `-j`/`--json` output: every reply as one JSON array, for scripts.
//!
//! The shape is MCollective's: `sender`, `agent`, `action`, `statuscode`,
//! `statusmsg` and `data` per reply, in that key order, replies sorted by
//! sender and object keys sorted inside `data`, so two runs with the same
//! replies print the same bytes.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

use super::{by_sender, canonical, NodeReply};

#[derive(Serialize)]
struct JsonReply<'a> {
    sender: &'a str,
    agent: &'a str,
    action: &'a str,
    statuscode: u8,
    statusmsg: &'a str,
    data: Value,
}

/// Writes the replies as a pretty JSON array followed by a newline.
pub fn write_json(
    w: &mut dyn Write,
    agent: &str,
    action: &str,
    replies: &[NodeReply],
) -> io::Result<()> {
    let rows: Vec<JsonReply<'_>> = by_sender(replies)
        .into_iter()
        .map(|r| JsonReply {
            sender: &r.sender,
            agent,
            action,
            statuscode: r.status.code(),
            statusmsg: &r.message,
            data: canonical(&Value::Object(r.data.clone())),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *w, &rows).map_err(io::Error::from)?;
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{ok, render, reply};
    use mco_core::wire::Status;
    use serde_json::json;

    #[test]
    fn array_of_replies_sorted_by_sender() {
        let r = [
            reply("web2", Status::InvalidData, "bad port", json!({}), 5),
            ok("web1", json!({"port": 80, "names": ["a", "b"]})),
        ];
        let out = render(|w| write_json(w, "service", "status", &r));
        assert!(out.ends_with("]\n"), "{out:?}");
        let parsed: Value = serde_json::from_str(&out).unwrap();
        let rows = parsed.as_array().unwrap();
        assert_eq!(rows.len(), 2);

        let first = rows[0].as_object().unwrap();
        assert_eq!(first.len(), 6);
        assert_eq!(first["sender"], "web1");
        assert_eq!(first["agent"], "service");
        assert_eq!(first["action"], "status");
        assert_eq!(first["statuscode"], 0);
        assert_eq!(first["statusmsg"], "OK");
        assert_eq!(first["data"], json!({"port": 80, "names": ["a", "b"]}));

        let second = rows[1].as_object().unwrap();
        assert_eq!(second["sender"], "web2");
        assert_eq!(second["statuscode"], 4);
        assert_eq!(second["statusmsg"], "bad port");
        assert_eq!(second["data"], json!({}));
    }

    #[test]
    fn keys_in_mcollective_order_and_pretty() {
        let r = [ok("n", json!({"b": 1, "a": 2}))];
        let out = render(|w| write_json(w, "ag", "ac", &r));
        let expected = r#"[
  {
    "sender": "n",
    "agent": "ag",
    "action": "ac",
    "statuscode": 0,
    "statusmsg": "OK",
    "data": {
      "a": 2,
      "b": 1
    }
  }
]
"#;
        assert_eq!(out, expected);
    }

    #[test]
    fn no_replies_is_an_empty_array() {
        let out = render(|w| write_json(w, "ag", "ac", &[]));
        assert_eq!(out, "[]\n");
    }
}
