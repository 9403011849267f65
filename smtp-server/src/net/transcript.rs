//! The protocol transcript at trace level: peer bytes escaped, AUTH secrets shown as `****`.

/// Tracks whether the client's next line is a SASL response (after a `334` reply).
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    secret_next: bool,
}

/// Escapes control characters and non-UTF-8 so a peer cannot forge log lines.
fn escape(line: &[u8]) -> String {
    line.escape_ascii().to_string()
}

impl Redactor {
    /// The client lines in `input`, redacted: `AUTH <mech> ****` for an initial response and
    /// `****` for every line answering a `334`.
    pub(crate) fn client_lines(&mut self, input: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for line in input.split_inclusive(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\r\n").unwrap_or(line);
            if std::mem::take(&mut self.secret_next) {
                lines.push(String::from("****"));
            } else if text.len() >= 5 && text[..5].eq_ignore_ascii_case(b"AUTH ") {
                let mut words = text.splitn(3, |&b| b == b' ');
                let _ = words.next();
                let mech = words.next().map(escape).unwrap_or_default();
                let ir = if words.next().is_some() { " ****" } else { "" };
                lines.push(format!("AUTH {mech}{ir}"));
            } else {
                lines.push(escape(text));
            }
        }
        lines
    }

    /// Notes the server's output: a final `334` line makes the next client line a secret.
    pub(crate) fn server_output(&mut self, output: &[u8]) {
        if let Some(last) = output
            .strip_suffix(b"\r\n")
            .and_then(|o| o.rsplit(|&b| b == b'\n').next())
        {
            self.secret_next = last.starts_with(b"334 ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_controls_escaped() {
        let mut r = Redactor::default();
        assert_eq!(
            r.client_lines(b"EHLO a\x1b[31m\r\nAUTH PLAIN AGEAYg==\r\nauth login\r\n"),
            ["EHLO a\\x1b[31m", "AUTH PLAIN ****", "AUTH login"]
        );
        r.server_output(b"334 VXNlcm5hbWU6\r\n");
        assert_eq!(r.client_lines(b"dXNlcg==\r\n"), ["****"]);
        r.server_output(b"250-x\r\n250 OK\r\n");
        assert_eq!(r.client_lines(b"MAIL FROM:<a@b>\r\n"), ["MAIL FROM:<a@b>"]);
    }
}
