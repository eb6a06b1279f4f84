//! Seeded random and mutated inputs for the parsers' property tests.
//!
//! A tiny xorshift generator instead of a property-testing crate: the tests need reproducible
//! streams of bytes and strings, not shrinking, and every failure message names the seed and the
//! input, which is enough to turn it into a table test. `fuzz/` runs the same parsers under
//! cargo-fuzz for open-ended searches.

mod xorshift;

use xorshift::XorShift;

/// Seeded text and bytes on the one xorshift generator the tests share (`xorshift.rs`, which
/// the integration tests include too).
#[derive(Debug, Clone)]
pub(crate) struct Rng(XorShift);

/// Characters that parsers of text tend to get wrong: separators of every format we read,
/// quotes, escapes, controls, line and paragraph separators, multi-byte and wide characters.
const AWKWARD: &[char] = &[
    '|',
    ';',
    '=',
    '&',
    '%',
    '+',
    '/',
    '{',
    '}',
    '[',
    ']',
    '"',
    '\\',
    ':',
    ',',
    '.',
    '-',
    '_',
    ' ',
    '\t',
    '\n',
    '\r',
    '\0',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{200b}',
    '\u{feff}',
    'é',
    'ß',
    'İ',
    'ﬁ',
    '٣',
    '𝟘',
    '中',
    '😀',
    '\u{10ffff}',
    'e',
    'E',
    '0',
    '9',
    'a',
    'Z',
];

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(XorShift::new(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform enough in `0..n` (n > 0); the modulo bias does not matter here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.0.chance(percent as u64)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Lengths skewed towards short, with the occasional long one.
    pub(crate) fn length(&mut self, max: usize) -> usize {
        if self.chance(10) {
            self.below(max + 1)
        } else {
            self.below(max.min(24) + 1)
        }
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Any Unicode scalar value, awkward ones more often than their share.
    pub(crate) fn char(&mut self) -> char {
        match self.below(4) {
            0 => *self.pick(AWKWARD),
            1 => char::from(b' ' + self.below(95) as u8),
            2 => char::from_u32(self.below(0x800) as u32).unwrap_or('?'),
            _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
        }
    }

    pub(crate) fn string(&mut self, len: usize) -> String {
        (0..len).map(|_| self.char()).collect()
    }

    /// A string of characters drawn from `alphabet`.
    pub(crate) fn string_of(&mut self, alphabet: &str, len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        (0..len).map(|_| *self.pick(&chars)).collect()
    }

    /// Applies one to four byte-level mutations: bit flips, inserted, deleted, duplicated or
    /// replaced ranges, dictionary tokens, truncation. The result may be invalid UTF-8.
    pub(crate) fn mutate_bytes(&mut self, input: &[u8], dict: &[&str]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(8) {
                0 if !out.is_empty() => {
                    let i = self.below(out.len());
                    out[i] ^= 1 << self.below(8);
                }
                1 => {
                    let b = self.next_u64() as u8;
                    out.insert(at, b);
                }
                2 if at < out.len() => {
                    let end = (at + 1 + self.below(8)).min(out.len());
                    out.drain(at..end);
                }
                3 if at < out.len() => {
                    let end = (at + 1 + self.below(16)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(at..at, copy);
                }
                4 if !dict.is_empty() => {
                    let token = self.pick(dict).as_bytes().to_vec();
                    out.splice(at..at, token);
                }
                5 => out.truncate(at),
                6 if at < out.len() => {
                    let len = 1 + self.below(3);
                    let token = self.string(len).into_bytes();
                    let end = (at + 1).min(out.len());
                    out.splice(at..end, token);
                }
                _ => {
                    let token = self.string(1).into_bytes();
                    out.splice(at..at, token);
                }
            }
        }
        out
    }

    /// Like [`Rng::mutate_bytes`], but keeps the text valid UTF-8 (edits at character
    /// boundaries), so a parser of `&str` sees it.
    pub(crate) fn mutate_str(&mut self, input: &str, dict: &[&str]) -> String {
        let mut chars: Vec<char> = input.chars().collect();
        for _ in 0..=self.below(4) {
            let at = self.below(chars.len() + 1);
            match self.below(6) {
                0 => {
                    let c = self.char();
                    chars.insert(at, c);
                }
                1 if at < chars.len() => {
                    let end = (at + 1 + self.below(8)).min(chars.len());
                    chars.drain(at..end);
                }
                2 if at < chars.len() => {
                    let end = (at + 1 + self.below(16)).min(chars.len());
                    let copy = chars[at..end].to_vec();
                    chars.splice(at..at, copy);
                }
                3 if !dict.is_empty() => {
                    let token: Vec<char> = self.pick(dict).chars().collect();
                    chars.splice(at..at, token);
                }
                4 => chars.truncate(at),
                _ if at < chars.len() => chars[at] = self.char(),
                _ => chars.push(self.char()),
            }
        }
        chars.into_iter().collect()
    }
}

/// How many iterations a property test runs: enough to matter, small enough for a debug build
/// to finish each test in well under two seconds. `DEPLOY_LOCK_PROPTEST_CASES` raises it for a
/// longer local search.
pub(crate) fn cases(default: usize) -> usize {
    std::env::var("DEPLOY_LOCK_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_spread() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<usize> = (0..200).map(|_| a.below(10)).collect();
        let ys: Vec<usize> = (0..200).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        for digit in 0..10 {
            assert!(xs.contains(&digit), "{digit} never drawn");
        }
        assert_ne!(Rng::new(0).next_u64(), 0);
    }

    #[test]
    fn string_mutations_stay_text() {
        let mut rng = Rng::new(3);
        for _ in 0..1000 {
            let s = rng.mutate_str("a|b|c", &["||", "=="]);
            assert!(s.chars().count() <= 5 + 4 * 16);
        }
    }
}
