//! The measurement marker carried in every published payload: `#<phase>.<seq>.<time>#`.
//!
//! Every server under test (rt's JSON event, a raw broadcast frame, a Socket.IO packet, an
//! SSE `data:` line, a polling response) carries the payload text verbatim, so subscribers
//! of every kind find their measurements the same way: by scanning for markers. `time` is
//! microseconds since the generator started (one process, one monotonic clock).

use std::sync::OnceLock;
use std::time::Instant;

/// One parsed marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Marker {
    /// 0 for warm-up publishes, then 1, 2... for the measured phases.
    pub(crate) phase: u32,
    /// Per-channel sequence number, from 1, continuous across phases.
    pub(crate) seq: u64,
    /// Publish time, microseconds since the generator started.
    pub(crate) time_us: u64,
}

fn anchor() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Microseconds since the generator started.
pub(crate) fn now_us() -> u64 {
    anchor().elapsed().as_micros() as u64
}

/// A payload of at least `size` bytes carrying `m` (padded with `x`, JSON- and URL-safe).
pub(crate) fn payload(m: Marker, size: usize) -> String {
    let mut s = format!("#{}.{}.{}#", m.phase, m.seq, m.time_us);
    while s.len() < size {
        s.push('x');
    }
    s
}

fn number(buf: &[u8], mut i: usize, end: u8) -> Option<(u64, usize)> {
    let start = i;
    let mut v: u64 = 0;
    while i < buf.len() && buf[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(buf[i] - b'0'))?;
        i += 1;
    }
    if i == start || i >= buf.len() || buf[i] != end {
        return None;
    }
    Some((v, i + 1))
}

/// Calls `f` for every complete marker in `buf`. Returns the offset of an incomplete marker
/// at the very end (to be kept for the next chunk of a stream), or `buf.len()`.
pub(crate) fn scan(buf: &[u8], mut f: impl FnMut(Marker)) -> usize {
    let mut i = 0;
    // memchr: most of every frame is envelope and padding, so the search dominates.
    while let Some(pos) = memchr::memchr(b'#', &buf[i..]) {
        let at = i + pos;
        let parsed = number(buf, at + 1, b'.').and_then(|(phase, j)| {
            let (seq, j) = number(buf, j, b'.')?;
            let (time_us, j) = number(buf, j, b'#')?;
            Some((
                Marker {
                    phase: phase as u32,
                    seq,
                    time_us,
                },
                j,
            ))
        });
        match parsed {
            Some((m, next)) => {
                f(m);
                i = next;
            }
            None => {
                // A marker cut by the end of a stream chunk is at most ~64 bytes long.
                let tail = &buf[at + 1..];
                if tail.len() < 64 && tail.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
                    return at;
                }
                i = at + 1;
            }
        }
    }
    buf.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_inside_any_envelope() {
        let m = Marker {
            phase: 2,
            seq: 17,
            time_us: 123_456,
        };
        let p = payload(m, 64);
        assert_eq!(p.len(), 64);
        let frame = format!(r#"{{"type":"event","channel":"c","data":"{p}","offset":17}}"#);
        let mut got = vec![];
        assert_eq!(scan(frame.as_bytes(), |m| got.push(m)), frame.len());
        assert_eq!(got, vec![m]);
        let sio = format!(r#"42["m","{p}"]"#);
        got.clear();
        scan(sio.as_bytes(), |m| got.push(m));
        assert_eq!(got, vec![m]);
    }

    #[test]
    fn a_marker_cut_at_the_end_is_kept_for_the_next_chunk() {
        let chunk = b"data: #1.2.3#xx\n\ndata: #1.3.4";
        let mut got = vec![];
        let keep = scan(chunk, |m| got.push(m));
        assert_eq!(got.len(), 1);
        assert_eq!(&chunk[keep..], b"#1.3.4");
        assert_eq!(scan(b"#x# junk #5", |_| panic!("no marker")), 9);
    }
}
