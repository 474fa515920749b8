//! Refusing secrets an operator typed or copied instead of generating. A random secret
//! essentially never looks like any of these; a hand-made one very often does, and it
//! would silently weaken every credential sealed or token signed with it.

/// Bytes that are `pattern` over and over (`abcabcabc…`, `0123456789abcdef0123…`), for
/// any pattern up to half the length.
pub fn repeats_a_pattern(bytes: &[u8]) -> bool {
    (1..=bytes.len() / 2).any(|period| bytes.iter().skip(period).zip(bytes).all(|(later, earlier)| later == earlier))
}

/// The longest run of bytes that each count one up or one down from the previous one
/// (`0123…`, `abcd…`, `zyx…`).
pub fn longest_counting_run(bytes: &[u8]) -> usize {
    let mut longest = bytes.len().min(1);
    for step in [1u8, u8::MAX] {
        let mut run = 1;
        for pair in bytes.windows(2) {
            run = if pair[1] == pair[0].wrapping_add(step) { run + 1 } else { 1 };
            longest = longest.max(run);
        }
    }
    longest
}

pub fn distinct_bytes(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    bytes.iter().for_each(|byte| seen[usize::from(*byte)] = true);
    seen.iter().filter(|seen| **seen).count()
}

/// The bits the byte frequencies carry (Shannon entropy times length): a lower bound on
/// what guessing the secret costs when its characters are drawn independently, and far
/// lower for text with a few repeated characters.
pub fn frequency_bits(bytes: &[u8]) -> f64 {
    let mut counts = [0usize; 256];
    bytes.iter().for_each(|byte| counts[usize::from(*byte)] += 1);
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| *count as f64)
        .map(|count| -count * (count / len).log2())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_runs_are_recognised() {
        assert!(repeats_a_pattern(b"0123456789abcdef0123456789abcdef"));
        assert!(repeats_a_pattern(b"abababab"));
        assert!(!repeats_a_pattern(b"abababac"));
        assert_eq!(longest_counting_run(b"x0123456789y"), 10);
        assert_eq!(longest_counting_run(b"zyxw"), 4);
        assert_eq!(longest_counting_run(b""), 0);
        assert_eq!(distinct_bytes(b"aabbc"), 3);
        assert!(frequency_bits(&[7; 64]) < 1.0);
        assert!((frequency_bits(b"0123456789abcdef") - 64.0).abs() < 1e-9);
    }
}
