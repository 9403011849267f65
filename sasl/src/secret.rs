//! [`Secret`]: a value that never prints and is zeroed when dropped.

use std::fmt;

use zeroize::Zeroize;

/// A password, token or response that carries one.
///
/// `Debug` prints `****`; there is deliberately no `Display`, so a secret cannot reach a log line
/// through `{}`. The value is overwritten with zeroes when the `Secret` is dropped. Read it with
/// [`Secret::expose`], at the one place where it is written to the wire.
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The wrapped value. Call this only where the value leaves the process (a socket write).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl<T: Zeroize + Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<&[u8]> for Secret<Vec<u8>> {
    fn from(value: &[u8]) -> Self {
        Secret(value.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "****");
        assert_eq!(format!("{:?}", Some(&s)), "Some(****)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn zeroize_clears_the_value() {
        // Drop calls exactly this; checking it on a live value avoids reading freed memory.
        let mut v = vec![1u8, 2, 3];
        v.zeroize();
        assert!(v.is_empty());
    }
}
