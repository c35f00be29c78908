//! The text log's writer: one event is one line, whatever a peer put in a
//! field. A site id, an agent's version string, a refusal message or a
//! health report can carry a newline (a forged log line) or terminal escape
//! codes; here every control character of an event but its final newline is
//! written escaped (`\n`, `\r`, `\x1b`...). The JSON log needs none of this:
//! serde escapes.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Makes [`Escaping`] writers over stderr.
pub(crate) struct EscapingStderr {
    /// Keep ESC as is (colours on a terminal we write ourselves).
    pub(crate) ansi: bool,
}

impl<'a> MakeWriter<'a> for EscapingStderr {
    type Writer = Escaping<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping {
            inner: io::stderr(),
            ansi: self.ansi,
        }
    }
}

/// Escapes control characters in each write but a trailing newline.
pub(crate) struct Escaping<W> {
    inner: W,
    ansi: bool,
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `buf` with every control character (but a final `\n`, tabs, and ESC
/// when `ansi`) written as an escape; borrowed when there is none (almost
/// every line).
pub(crate) fn escape(buf: &[u8], ansi: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match buf.split_last() {
        Some((b'\n', body)) => (body, &b"\n"[..]),
        _ => (buf, &b""[..]),
    };
    if !body.iter().any(|&b| needs_escape(b, ansi)) {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut out = Vec::with_capacity(buf.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if needs_escape(b, ansi) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
}

fn needs_escape(b: u8, ansi: bool) -> bool {
    (b < 0x20 && b != b'\t' && !(ansi && b == 0x1b)) || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn one_event_one_line() {
        let forged = b"WARN agent refused site=home\nINFO forged: admin logged in\n";
        let out = escape(forged, false);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(
            out,
            b"WARN agent refused site=home\\nINFO forged: admin logged in\n".to_vec()
        );
        assert_eq!(
            escape(b"a\rb\x1b[31mc\x7f\n", false),
            b"a\\rb\\x1b[31mc\\x7f\n".to_vec()
        );
        assert_eq!(
            escape(b"\x1b[31mred\x1b[0m\tx\n", true),
            b"\x1b[31mred\x1b[0m\tx\n".to_vec()
        );
        assert_eq!(escape(b"plain line\n", false), b"plain line\n".to_vec());
    }
}
