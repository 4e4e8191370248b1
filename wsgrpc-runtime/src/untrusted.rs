//! Strings a client wrote, on their way into the bridge's logs and into
//! the error messages it sends back: escaped, so that a newline cannot
//! forge a log line, and cut short, so that a 3 MiB method name costs a
//! line, not megabytes.

use std::borrow::Cow;
use std::fmt;

/// Characters of a client's string that a log line shows.
const LOGGED_CHARS: usize = 96;
/// Bytes of an error message the bridge sends back about a client's input.
const MESSAGE_BYTES: usize = 1 << 10;

/// Shows a client's string in a log line: control characters, quotes and
/// backslashes escaped as Rust writes them, and only its start when it is
/// long, with its length.
#[derive(Clone, Copy)]
pub(crate) struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(LOGGED_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// An error message about a client's input, at most about a KiB: the
/// message travels back in one frame and may quote the input.
pub(crate) fn bounded_message(message: &str) -> Cow<'_, str> {
    if message.len() <= MESSAGE_BYTES {
        return Cow::Borrowed(message);
    }
    let mut end = MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} bytes in all)",
        &message[..end],
        message.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_cannot_start_a_log_line() {
        let shown = Untrusted("Say\nINFO forged: admin logged in\r").to_string();
        assert_eq!(shown, "Say\\nINFO forged: admin logged in\\r");
        assert!(!shown.contains('\n'));
    }

    #[test]
    fn a_long_string_shows_its_start_and_length() {
        let long = "é".repeat(3 << 20);
        let shown = Untrusted(&long).to_string();
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with(&format!("… ({} bytes)", long.len())));
        assert_eq!(Untrusted("short").to_string(), "short");
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        let long = format!("unknown method `{}`", "ü".repeat(4000));
        let bounded = bounded_message(&long);
        assert!(bounded.len() < MESSAGE_BYTES + 40);
        assert!(bounded.ends_with(&format!("({} bytes in all)", long.len())));
        assert!(matches!(bounded_message("fine"), Cow::Borrowed("fine")));
    }
}
