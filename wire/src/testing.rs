//! Split-point invariance helpers for tests of sans-IO code.
//!
//! A resumable parser must produce the same result however its input is cut into reads. These
//! helpers feed one input in every interesting way: whole, byte by byte, and split in two at
//! every position. Every mailferry crate's tests use them; they are public so other crates
//! (and users testing their own protocol code on top of mailferry) can too.
//!
//! ```
//! use mailferry_wire::testing::{assert_split_invariant, for_each_split};
//!
//! let mut ways = 0;
//! for_each_split(b"ab", |chunks| {
//!     assert_eq!(chunks.concat(), b"ab");
//!     ways += 1;
//! });
//! assert_eq!(ways, 5); // whole, bytes, "|ab", "a|b", "ab|"
//!
//! // Counting lines must not depend on the cuts.
//! assert_split_invariant(b"a\nb\n", |chunks| {
//!     chunks.iter().map(|c| c.iter().filter(|&&b| b == b'\n').count()).sum::<usize>()
//! });
//! ```

use std::fmt::Debug;

/// Calls `f` with `input` cut into chunks in each of these ways, in this order: the whole input
/// as one chunk; one chunk per byte; then, for every `i` in `0..=input.len()`, the two chunks
/// `input[..i]` and `input[i..]` (so empty chunks occur at both ends).
///
/// The number of calls is `input.len() + 3`.
pub fn for_each_split(input: &[u8], mut f: impl FnMut(&[&[u8]])) {
    f(&[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    f(&bytes);
    for i in 0..=input.len() {
        let (head, tail) = input.split_at(i);
        f(&[head, tail]);
    }
}

/// Runs `run` on every split of [`for_each_split`] and asserts that each result equals the
/// result for the whole input, which it returns.
///
/// # Panics
///
/// When a split gives a different result; the message names the chunks.
pub fn assert_split_invariant<T: PartialEq + Debug>(
    input: &[u8],
    mut run: impl FnMut(&[&[u8]]) -> T,
) -> T {
    let whole = run(&[input]);
    for_each_split(input, |chunks| {
        let got = run(chunks);
        assert!(
            got == whole,
            "split-point invariance broken for chunks {:?}:\n  whole: {whole:?}\n  split: {got:?}",
            chunks
                .iter()
                .map(|c| c.escape_ascii().to_string())
                .collect::<Vec<_>>()
        );
    });
    whole
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_of_three_bytes() {
        let mut seen: Vec<Vec<Vec<u8>>> = Vec::new();
        for_each_split(b"abc", |chunks| {
            seen.push(chunks.iter().map(|c| c.to_vec()).collect());
        });
        let expected: Vec<Vec<&[u8]>> = vec![
            vec![b"abc"],
            vec![b"a", b"b", b"c"],
            vec![b"", b"abc"],
            vec![b"a", b"bc"],
            vec![b"ab", b"c"],
            vec![b"abc", b""],
        ];
        let expected: Vec<Vec<Vec<u8>>> = expected
            .into_iter()
            .map(|v| v.into_iter().map(<[u8]>::to_vec).collect())
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn empty_input_still_calls() {
        let mut calls = 0;
        for_each_split(b"", |chunks| {
            assert!(chunks.concat().is_empty());
            calls += 1;
        });
        assert_eq!(calls, 3);
    }

    #[test]
    #[should_panic(expected = "split-point invariance broken")]
    fn assert_split_invariant_catches_dependence_on_cuts() {
        assert_split_invariant(b"ab", |chunks| chunks.len());
    }
}
