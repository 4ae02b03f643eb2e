//! Byte-level helpers the parser and the encoder share, written for WASM:
//! there every loop iteration also pays the time-limit check, `memcmp` is a
//! byte loop, and a copy of unknown length is a call out of the sandbox
//! (`memory.copy`), so the common short cases are done a word at a time.

use std::mem::MaybeUninit;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The `N` bytes of `b` from `at`, which must be there.
#[inline(always)]
fn array_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&b[at..at + N]);
    w
}

#[inline(always)]
fn load8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array_at(b, at))
}

/// Two bytes from `at`, if there are two.
#[inline(always)]
pub(crate) fn load2(b: &[u8], at: usize) -> Option<u16> {
    let w = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([w[0], w[1]]))
}

#[inline(always)]
fn load4(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array_at(b, at))
}

/// High bit set in each byte of `w` that is `"`, `\\` or below 0x20, and,
/// with `NON_ASCII`, in each byte at or above 0x80. Exact for the first
/// flagged byte: a borrow can only flag bytes above a real hit.
#[inline(always)]
fn special_bytes<const NON_ASCII: bool>(w: u64) -> u64 {
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let bs = w ^ (ONES * b'\\' as u64);
    let backslash = bs.wrapping_sub(ONES) & !bs & HIGH;
    let hits = control | quote | backslash;
    if NON_ASCII {
        hits | (w & HIGH)
    } else {
        hits
    }
}

#[inline(always)]
fn is_special<const NON_ASCII: bool>(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || (NON_ASCII && b >= 0x80)
}

/// The index of the first `"`, `\\` or control byte (and, with
/// `NON_ASCII`, the first byte ≥ 0x80), eight bytes a step (sixteen with
/// WASM SIMD).
#[inline]
pub(crate) fn first_special<const NON_ASCII: bool>(bytes: &[u8]) -> Option<usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (bytes, skipped) = {
        // The first 32 bytes outside the loop: most keys and values are
        // shorter (pmacct's stamps are 19 bytes), and in WASM entering a
        // loop is a time check.
        // The first special byte of the 16 from `at`, if any.
        let step = |at: usize, chunk: &[u8]| {
            let hits = simd::special_mask::<NON_ASCII>(chunk);
            (hits != 0).then(|| at + hits.trailing_zeros() as usize)
        };
        let mut base = 0;
        if let Some(chunk) = bytes.get(..16) {
            if let Some(i) = step(0, chunk) {
                return Some(i);
            }
            base = 16;
            if let Some(chunk) = bytes.get(16..32) {
                if let Some(i) = step(16, chunk) {
                    return Some(i);
                }
                base = 32;
            }
            while let Some(chunk) = bytes.get(base..base + 16) {
                if let Some(i) = step(base, chunk) {
                    return Some(i);
                }
                base += 16;
            }
        }
        (&bytes[base..], base)
    };
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let skipped = 0;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = skipped;
    for c in &mut chunks {
        let hits = special_bytes::<NON_ASCII>(load8(c, 0));
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| is_special::<NON_ASCII>(b))
        .map(|p| base + p)
}

/// Bit `k` set when byte `at + k` of `b` is special as for
/// `first_special::<true>`, for the 16 bytes from `at` (which must be
/// there). Exact for every byte, not just the first hit: callers shift
/// low bits away. Native builds have it for the tests only.
#[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn special_mask16(b: &[u8], at: usize) -> u32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::special_mask::<true>(&b[at..at + 16])
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        (0..16).fold(0, |m, k| {
            m | (u32::from(is_special::<true>(b[at + k])) << k)
        })
    }
}

/// The first special byte (as for `first_special::<true>`) of `b[from..]`,
/// relative to `from`, looking at most 64 bytes ahead in four steps of 16
/// and without a loop; near the end of `b` its last 16 bytes are read
/// instead, the ones before `from` shifted away. `None` when there is none
/// within 64 bytes and before the end of `b`, or `b` is under 16 bytes: the
/// caller then declines the record to the exact slow path.
///
/// The module's parser uses it instead of `first_special`: in a module a
/// loop is a time check, which calls out of the module when the deadline
/// has passed, and a call inside the parser's loop made Cranelift keep
/// the loop's state on the stack rather than in registers.
#[cfg(any(test, all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn first_special_near(b: &[u8], from: usize) -> Option<usize> {
    let last = b.len().checked_sub(16)?;
    if from > b.len() {
        return None;
    }
    let mut at = from;
    for _ in 0..4 {
        if at > last {
            let m = special_mask16(b, last) >> (at - last);
            return (m != 0).then(|| at - from + m.trailing_zeros() as usize);
        }
        let m = special_mask16(b, at);
        if m != 0 {
            return Some(at - from + m.trailing_zeros() as usize);
        }
        at += 16;
    }
    None
}

/// Whether `name` may be a label name by Prometheus' rules: not empty,
/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not starting with `__` (the store's own
/// labels, `__name__` among them: a sample's name is `sample`'s to set).
/// VictoriaMetrics reads a label named `""` as the metric's name, and a
/// remote-write receiver that validates names refuses a whole request for
/// one it cannot take. Byte by byte: for names given by a transform's
/// code; [`append_strings`] checks a record's keys from the window it copies.
/// Out of line: its loop, inlined into a loop over labels, would crowd that
/// loop's registers in a module.
#[inline(never)]
pub(crate) fn label_name_ok(name: &[u8]) -> bool {
    match name {
        [] | [b'0'..=b'9', ..] | [b'_', b'_', ..] => false,
        _ => name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_'),
    }
}

/// [`label_name_ok`] for `text[start..end]`, 16 bytes at once when the
/// name is at most 16 bytes long with 16 bytes of `text` to read from its
/// start (the host checks a module's label names so, in its text).
#[inline]
pub fn label_name_ok_in(text: &[u8], start: usize, end: usize) -> bool {
    let n = end.saturating_sub(start);
    match text.get(start..start + 16) {
        Some(w) if n <= 16 => window_name_ok(w.try_into().expect("16 bytes"), n),
        _ => text.get(start..end).is_some_and(label_name_ok),
    }
}

/// [`label_name_ok`] for the `n` first bytes of `w` (`n` at most 16),
/// without a loop: a few vector operations on the 16 bytes at once.
#[inline(always)]
fn window_name_ok(w: &[u8; 16], n: usize) -> bool {
    let first_n = (1u32 << n) - 1;
    let digit_first = w[0].is_ascii_digit();
    let reserved = n >= 2 && w[0] == b'_' && w[1] == b'_';
    n != 0 && non_word_mask(w) & first_n == 0 && !digit_first && !reserved
}

/// Bit `k` set when byte `k` of `w` is not `[a-zA-Z0-9_]`.
#[inline(always)]
fn non_word_mask(w: &[u8; 16]) -> u32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::non_word_mask(w)
    }
    #[cfg(target_arch = "x86_64")]
    {
        sse2::non_word_mask(w)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    {
        (0..16).fold(0, |m, k| {
            m | (u32::from(!(w[k].is_ascii_alphanumeric() || w[k] == b'_')) << k)
        })
    }
}

/// SSE2 is part of x86_64 itself: the native build's label-name check.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::*;

    /// Bit i set when byte i of `w` is not `[a-zA-Z0-9_]`.
    #[inline(always)]
    pub(super) fn non_word_mask(w: &[u8; 16]) -> u32 {
        // SAFETY: SSE2 is always there on x86_64, and the load reads the 16
        // bytes of `w` (unaligned loads are allowed).
        unsafe {
            let v = _mm_loadu_si128(w.as_ptr() as *const __m128i);
            // Unsigned `x - lo <= len - 1`, as `min(d, len - 1) == d`.
            let within = |x: __m128i, lo: u8, len: u8| {
                let d = _mm_sub_epi8(x, _mm_set1_epi8(lo as i8));
                _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8((len - 1) as i8)), d)
            };
            let digit = within(v, b'0', 10);
            let letter = within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 26);
            let underscore = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'_' as i8));
            let word = _mm_or_si128(_mm_or_si128(digit, letter), underscore);
            !(_mm_movemask_epi8(word) as u32) & 0xffff
        }
    }
}

/// Whether a JSON number's text may be too large for a 64-bit float
/// (`1e309` is the shortest that is): it has an exponent, or over 16
/// bytes. Without a loop; the caller then parses it to know.
#[inline(always)]
pub(crate) fn may_overflow(number: &[u8]) -> bool {
    let n = number.len();
    let has_e = |w: u64| {
        let x = (w | (ONES * 0x20)) ^ (ONES * u64::from(b'e'));
        x.wrapping_sub(ONES) & !x & HIGH != 0
    };
    match n {
        0..=4 => false,
        5..=7 => has_e(u64::from(load4(number, 0)) | (u64::from(load4(number, n - 4)) << 32)),
        8..=16 => has_e(load8(number, 0)) || has_e(load8(number, n - 8)),
        _ => true,
    }
}

/// Only built for WASM, so the native tests here never run it: the host's
/// `wasm_and_native_agree_on_special_bytes_at_every_position` does.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// Bit i set when byte i of `chunk` (16 bytes) is special, as in
    /// `special_bytes`.
    #[inline(always)]
    pub(super) fn special_mask<const NON_ASCII: bool>(chunk: &[u8]) -> u32 {
        assert!(chunk.len() >= 16);
        // SAFETY: 16 readable bytes, checked above; `v128.load` has no
        // alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr() as *const v128) };
        let quote = u8x16_eq(v, u8x16_splat(b'"'));
        let backslash = u8x16_eq(v, u8x16_splat(b'\\'));
        // Signed, bytes ≥ 0x80 are negative: below 0x20 as well.
        let low = if NON_ASCII {
            i8x16_lt(v, i8x16_splat(0x20))
        } else {
            u8x16_lt(v, u8x16_splat(0x20))
        };
        u8x16_bitmask(v128_or(v128_or(quote, backslash), low)) as u32
    }

    /// Bit i set when byte i of `w` is not `[a-zA-Z0-9_]`.
    #[inline(always)]
    pub(super) fn non_word_mask(w: &[u8; 16]) -> u32 {
        // SAFETY: 16 readable bytes; `v128.load` has no alignment requirement.
        let v = unsafe { v128_load(w.as_ptr() as *const v128) };
        // Unsigned `x - lo <= len - 1`, as `min(d, len - 1) == d`: two
        // instructions on x86 (an unsigned `lt` is more).
        let within = |x: v128, lo: u8, len: u8| {
            let d = u8x16_sub(x, u8x16_splat(lo));
            u8x16_eq(u8x16_min(d, u8x16_splat(len - 1)), d)
        };
        let digit = within(v, b'0', 10);
        let letter = within(v128_or(v, u8x16_splat(0x20)), b'a', 26);
        let underscore = u8x16_eq(v, u8x16_splat(b'_'));
        !(u8x16_bitmask(v128_or(v128_or(digit, letter), underscore)) as u32) & 0xffff
    }
}

/// The first index from `i` that is not an ASCII digit, or `b.len()`, for
/// runs of up to 24 digits: three steps of eight bytes and no loop (near
/// the end of `b` its last eight bytes, shifted). After a longer run it
/// returns an index inside the run, which no caller takes for the end of a
/// number: the record goes to the slow path. With `b` under eight bytes it
/// returns `i`, no digits, likewise.
#[inline(always)]
pub(crate) fn digits_end(b: &[u8], i: usize) -> usize {
    let Some(last) = b.len().checked_sub(8) else {
        return i;
    };
    let mut at = i;
    for _ in 0..3 {
        if at >= b.len() {
            return at;
        }
        // Past `last`, the bytes shifted in are zeros: not digits, so the
        // step ends at `b.len()`.
        let w = if at <= last {
            load8(b, at)
        } else {
            load8(b, last) >> ((at - last) * 8)
        };
        let x = w ^ (ONES * b'0' as u64);
        // Per byte, without carries between bytes: high bit set when the
        // byte minus '0' is 10 or more (or the byte is not ASCII).
        let non_digit = (((x & !HIGH) + ONES * (0x80 - 10)) | x) & HIGH;
        if non_digit != 0 {
            return at + (non_digit.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at
}

/// Whether `bytes` can be written between quotes as it is (no `"`, `\\` or
/// control byte).
#[inline]
pub(crate) fn is_plain(bytes: &[u8]) -> bool {
    first_special::<false>(bytes).is_none()
}

/// `a == b`, comparing words: field names are short, and a compiled-in
/// `memcmp` walks them byte by byte.
#[inline]
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => load4(a, 0) == load4(b, 0) && load4(a, n - 4) == load4(b, n - 4),
        8..=16 => load8(a, 0) == load8(b, 0) && load8(a, n - 8) == load8(b, n - 8),
        _ => a == b,
    }
}

/// Copy `src` (at most 16 bytes) to `dst[at..]` a word at a time (overlapping moves for the
/// tail), never through `memcpy`: in WASM a copy of unknown length is a
/// call out of the sandbox (`memory.copy`), dear for a 6-byte label.
#[inline(always)]
fn put(dst: &mut [MaybeUninit<u8>], at: usize, src: &[u8]) {
    let n = src.len();
    let word = |dst: &mut [MaybeUninit<u8>], to: usize, w: u64| {
        dst[to..to + 8].copy_from_slice(&w.to_le_bytes().map(MaybeUninit::new));
    };
    match n {
        0 => {}
        1..=3 => {
            dst[at].write(src[0]);
            dst[at + n / 2].write(src[n / 2]);
            dst[at + n - 1].write(src[n - 1]);
        }
        4..=7 => {
            let (head, tail) = (load4(src, 0), load4(src, n - 4));
            dst[at..at + 4].copy_from_slice(&head.to_le_bytes().map(MaybeUninit::new));
            dst[at + n - 4..at + n].copy_from_slice(&tail.to_le_bytes().map(MaybeUninit::new));
        }
        _ => {
            word(dst, at, load8(src, 0));
            word(dst, at + n - 8, load8(src, n - 8));
        }
    }
}

/// Append the concatenation of `parts` after one capacity check: the
/// pieces of an import line are short, and each `extend_from_slice` would
/// check capacity and update the length on its own.
#[inline(always)]
pub(crate) fn append_all<const N: usize>(out: &mut Vec<u8>, parts: [&[u8]; N]) {
    if parts.iter().any(|p| p.len() > 16) {
        for p in parts {
            out.extend_from_slice(p);
        }
        return;
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(total);
    let len = out.len();
    let dst = &mut out.spare_capacity_mut()[..total];
    let mut at = 0;
    for p in parts {
        put(dst, at, p);
        at += p.len();
    }
    // SAFETY: `put` wrote every byte of `dst[..total]` (the parts cover it
    // end to end), and `reserve(total)` made room for them.
    unsafe { out.set_len(len + total) };
}

/// A label's name and value appended to `out` back to back, where both
/// usually lie inside `within` (the record they were parsed from and the
/// records after it in the chunk): then each is copied as one 16-byte move
/// from `within` (a value of 17–32 bytes as two), each move overwriting
/// what the previous one wrote past its end, as the
/// parser reads them. Other text takes `extend_from_slice`.
///
/// Returns whether `name` may be a label name ([`label_name_ok`]) and
/// where the name and the value end in `out`.
#[inline(always)]
pub(crate) fn append_strings(
    out: &mut Vec<u8>,
    within: &[u8],
    name: &[u8],
    value: &[u8],
) -> (bool, [u32; 2]) {
    let (n, v, len) = (name.len(), value.len(), out.len());
    let ends = [(len + n) as u32, (len + n + v) as u32];
    let windows = match (window(within, name), window(within, value)) {
        (Some(nw), Some(vw)) if n <= 16 && v <= 32 => (nw, vw),
        _ => return (append_checked_strings(out, name, value), ends),
    };
    let vw2 = match v > 16 {
        false => None,
        true => match window(within, &value[16..]) {
            Some(w) => Some(w),
            None => return (append_checked_strings(out, name, value), ends),
        },
    };
    out.reserve(n + v + 32);
    let dst = &mut out.spare_capacity_mut()[..n + v + 32];
    let put16 = |dst: &mut [MaybeUninit<u8>], at: usize, w: &[u8; 16]| {
        dst[at..at + 16].copy_from_slice(&w.map(MaybeUninit::new));
    };
    put16(dst, 0, windows.0);
    put16(dst, n, windows.1);
    if let Some(w) = vw2 {
        put16(dst, n + 16, w);
    }
    // SAFETY: `dst[..n + v]` is written: the name's window from 0 (its
    // first `n` bytes are the name), the value's from `n` and, for v > 16,
    // its second from n + 16 (together their first `v` bytes are the
    // value); `reserve(n + v + 32)` made room for the last window.
    unsafe { out.set_len(len + n + v) };
    (window_name_ok(windows.0, n), ends)
}

#[inline(never)]
fn append_checked_strings(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> bool {
    out.extend_from_slice(name);
    out.extend_from_slice(value);
    label_name_ok(name)
}

/// The 16 bytes of `within` that start where `part` starts, if `part` lies
/// inside `within` with 16 bytes to read from its start. Addresses only
/// locate it: the bytes are read through `within`, so text elsewhere (an
/// address outside `within` gives an offset past its end) is never read.
#[inline(always)]
fn window<'w>(within: &'w [u8], part: &[u8]) -> Option<&'w [u8; 16]> {
    let at = (part.as_ptr() as usize).wrapping_sub(within.as_ptr() as usize);
    within.get(at..at.checked_add(16)?)?.try_into().ok()
}

/// `bytes` as text, for slices the parser has checked are ASCII.
#[inline(always)]
pub(crate) fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every caller passes bytes it has checked to be below 0x80,
    // and ASCII is UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_special_finds_the_first_byte() {
        let text = "abcdefgh01234567\"rest\\";
        for start in 0..text.len() {
            let want = text[start..]
                .bytes()
                .position(|b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(first_special::<false>(&text.as_bytes()[start..]), want);
        }
        assert_eq!(first_special::<false>(b"\x01"), Some(0));
        assert_eq!(first_special::<false>("ééééé\n".as_bytes()), Some(10));
        assert_eq!(first_special::<true>("abcdéé\n".as_bytes()), Some(4));
        assert_eq!(first_special::<true>("abcdefghijé".as_bytes()), Some(10));
        assert_eq!(first_special::<false>(b"plain text, no hit"), None);
    }

    /// The window logic of the module's scanner (its 16-byte mask is WASM
    /// SIMD there, checked against the native scanner by the host's
    /// `wasm_and_native_agree_on_special_bytes_at_every_position`): every
    /// buffer length from 0 to 89, every start, a hit at every position or
    /// none. It must find the first hit within 64 bytes of `from`, and only
    /// then; a hit it reports is always the first.
    #[test]
    fn first_special_near_sees_64_bytes_from_anywhere() {
        for len in 0..90 {
            for hit in (0..len).map(Some).chain([None]) {
                let mut b = vec![b'a'; len];
                if let Some(h) = hit {
                    b[h] = if h % 2 == 0 { b'"' } else { 0xc3 };
                }
                for from in 0..=len + 1 {
                    let first = b.get(from..).and_then(first_special::<true>);
                    let want = first.filter(|&at| at < 64 && len >= 16);
                    assert_eq!(
                        first_special_near(&b, from),
                        want,
                        "len {len}, hit {hit:?}, from {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn special_byte_tests_are_exact() {
        for b in 0u8..=255 {
            for pos in 0..11 {
                let mut v = vec![b'a'; 11];
                v[pos] = b;
                let plain = b >= 0x20 && b != b'"' && b != b'\\';
                assert_eq!(is_plain(&v), plain, "byte {b:#x} at {pos}");
                let ascii_plain = plain && b < 0x80;
                assert_eq!(
                    first_special::<true>(&v),
                    (!ascii_plain).then_some(pos),
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    #[test]
    fn digits_end_is_exact() {
        for b in 0u8..=255 {
            for pos in 0..12 {
                let mut v = vec![b'7'; 12];
                v[pos] = b;
                for from in [0, 3, 5, 11, 12] {
                    let want = (from..12).find(|&k| !v[k].is_ascii_digit()).unwrap_or(12);
                    assert_eq!(digits_end(&v, from), want, "byte {b:#x} at {pos}");
                }
            }
        }
    }

    /// Exact for runs of up to 24 digits wherever they end (the last steps
    /// read the buffer's last eight bytes); after longer runs an index
    /// inside the run, never past a non-digit; under eight bytes, no digits.
    #[test]
    fn digits_end_reads_24_digits_without_a_loop() {
        for len in 8..48 {
            for run in 0..=len {
                for from in 0..=len - run {
                    let mut v = vec![b'x'; len];
                    v[from..from + run].fill(b'9');
                    let got = digits_end(&v, from);
                    if run <= 24 {
                        assert_eq!(got, from + run, "len {len}, run {run}, from {from}");
                    } else {
                        assert!(got > from && got < from + run, "len {len}, run {run}");
                    }
                }
            }
        }
        assert_eq!(digits_end(b"1234567", 0), 0);
    }

    #[test]
    fn eq_and_append_agree_with_std() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..text.len() {
            let a = &text[..n];
            let mut out = b"prefix".to_vec();
            append_all(&mut out, [a]);
            assert_eq!(&out[6..], a, "append {n}");
            assert_eq!(out.len(), 6 + n);
            // Equal contents in another buffer, not the same slice.
            let mut copy = Vec::new();
            copy.extend_from_slice(a);
            assert!(eq(a, &copy), "equal {n}");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 1;
                assert!(!eq(a, &b), "differs at {at} of {n}");
            }
            assert!(!eq(a, &text[..n + 1]), "lengths {n}");
        }
    }

    /// `start`, with spare capacity that holds a pattern no test writes: a
    /// byte left unwritten shows instead of a stale copy of the right one.
    fn poisoned(start: &[u8]) -> Vec<u8> {
        let mut out = vec![0xEE; 512];
        out[..start.len()].copy_from_slice(start);
        out.truncate(start.len());
        out
    }

    /// Every name length up to 20 and value length up to 40, placed
    /// anywhere in the record (so with and without 16 or 32 bytes after
    /// them), and text from elsewhere:
    /// always the same bytes as the plain concatenation, nothing past them.
    #[test]
    fn append_strings_writes_exactly_the_label() {
        // Names up to 16 bytes and values up to 32 take the windows when
        // 16 bytes (32 for a long value) can be read from where they start;
        // the rest, text near the end or from elsewhere, the plain path.
        const LEN: usize = 64;
        let record: Vec<u8> = (0..LEN as u8).map(|i| b'a' + i % 26).collect();
        let elsewhere: Vec<u8> = (0..40u8).map(|i| b'0' + i % 10).collect();
        for n in 0..=20 {
            for v in 0..=40 {
                for at in [0, 5, LEN - 40, LEN - 32, LEN - 20, LEN - 16, LEN - v.max(n)] {
                    let name = &record[at.min(LEN - n)..][..n];
                    let near = &record[at.min(LEN - v)..][..v];
                    for value in [&record[LEN - v..], near, &elsewhere[..v]] {
                        let mut out = poisoned(b"{prefix");
                        let (_, ends) = append_strings(&mut out, &record, name, value);
                        let want = [&b"{prefix"[..], name, value].concat();
                        assert_eq!(out, want, "name {n}@{at}, value {v}");
                        assert_eq!(ends, [7 + n as u32, (7 + n + v) as u32]);
                    }
                }
            }
        }
    }

    /// The window check against the byte-by-byte rule: every byte value at
    /// every position of names of every length up to 20 (past the window),
    /// inside a buffer (the window) and at its very end (no window to read).
    #[test]
    fn label_names_are_checked_exactly() {
        let rule = |name: &[u8]| {
            !name.is_empty()
                && !name[0].is_ascii_digit()
                && !name.starts_with(b"__")
                && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut out = Vec::new();
        for len in 0..=20usize {
            for pos in 0..len.max(1) {
                for byte in 0..=255u8 {
                    let mut name = vec![b'a'; len];
                    if len > 0 {
                        name[pos] = byte;
                    }
                    let want = rule(&name);
                    assert_eq!(label_name_ok(&name), want, "{name:?}");
                    let mut within = name.clone();
                    within.extend_from_slice(b"\":\"value\"}trailing bytes");
                    let value = &within[len + 3..len + 8];
                    assert_eq!(
                        append_strings(&mut out, &within, &within[..len], value).0,
                        want,
                        "{name:?}"
                    );
                    assert_eq!(
                        append_strings(&mut out, &name, &name, b"v").0,
                        want,
                        "{name:?} at the end"
                    );
                    out.clear();
                }
            }
        }
        for (name, ok) in [
            (&b"ip_src"[..], true),
            (b"_x", true),
            (b"__name__", false),
            (b"__", false),
            (b"_", true),
            (b"9a", false),
            (b"a9", true),
            (b"ip-src", false),
            (b"", false),
        ] {
            let within = [name, b"\": \"a value\", and more"].concat();
            let value = &within[name.len() + 4..name.len() + 11];
            assert_eq!(
                append_strings(&mut out, &within, &within[..name.len()], value).0,
                ok,
                "{name:?}"
            );
        }
    }

    /// Every number a float cannot hold is flagged; numbers without an
    /// exponent and short are not looked at.
    #[test]
    fn overflowing_numbers_are_flagged() {
        for n in [
            "1e309",
            "1E309",
            "-1e309",
            "1e+309",
            "9e999",
            "12345678e301",
            "0.5e310",
            "123456789012345678",
            "1e-400",
        ] {
            assert!(may_overflow(n.as_bytes()), "{n}");
        }
        for n in [
            "0",
            "-5",
            "1e99",
            "9000",
            "1.5",
            "123456789012345",
            "-1234567.25",
        ] {
            assert!(!may_overflow(n.as_bytes()), "{n}");
            assert!(n.parse::<f64>().unwrap().is_finite());
        }
        // Flagged or not, the flag never misses an overflow.
        for exp in 300..320 {
            for digits in 1..12 {
                let n = format!("{}e{exp}", "9".repeat(digits));
                if n.parse::<f64>().unwrap().is_infinite() {
                    assert!(may_overflow(n.as_bytes()), "{n}");
                }
            }
        }
    }
}
