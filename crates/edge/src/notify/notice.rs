//! One thing to tell an operator, as every sink sends it.

/// One thing to tell.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Notice {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) subject: String,
    pub(crate) at: String,
    pub(crate) detail: serde_json::Value,
}

/// A new notice, with a fresh id and the time now.
pub(crate) fn notice(event: &str, subject: &str, detail: serde_json::Value) -> Notice {
    Notice {
        id: hex::encode(rand::random::<[u8; 8]>()),
        event: event.to_owned(),
        subject: subject.to_owned(),
        at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        detail,
    }
}
