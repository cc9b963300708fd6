//! Fuzz targets for rt's parsers of untrusted input.
//!
//! Each target is a plain function over arbitrary bytes, so it runs two ways:
//!
//! - under libFuzzer with coverage guidance: `cargo +nightly fuzz run <target> --features
//!   libfuzzer` (or `cargo xtask fuzz --seconds N` for every target);
//! - on stable, as this crate's unit tests: every file of the committed corpus
//!   (`corpus/<target>/`) plus proptest-generated inputs (`cargo test --lib` here).
//!
//! A target fails by panicking: on any panic inside rt's parsers, and on broken properties
//! (a cursor that does not survive printing and parsing again, a forged token accepted).

use std::str::FromStr;

use rt_core::{ChannelPattern, Cursor, PublishRequest, Start};
use rt_http::TokenVerifier;

/// The `Last-Event-ID` / `cursor` parser: never panics, and every cursor it accepts prints
/// back to a string that parses to the same cursor.
pub fn cursor(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Start::parse(Some(s));
    if let Ok(c) = Cursor::from_str(s) {
        let printed = c.to_string();
        match Cursor::from_str(&printed) {
            Ok(again) => assert_eq!(again, c, "{s:?} printed as {printed:?}"),
            Err(e) => panic!("{s:?} parsed but its printed form {printed:?} does not: {e}"),
        }
    }
}

/// The publish JSON body (HTTP API, polling, WebSocket `publish`): never panics; what it
/// accepts is a valid event.
pub fn publish(data: &[u8]) {
    let Ok(request) = PublishRequest::from_json(data) else {
        return;
    };
    if let Ok(event) = request.into_new_event() {
        assert!(rt_core::Channel::new(event.channel.as_str()).is_ok());
        assert!(rt_core::EventName::new(event.name.as_str()).is_ok());
    }
}

/// The secret the token target verifies with: the fuzzer does not know it, so no input may
/// ever verify.
const SECRET: &[u8] = b"rt-fuzz secret the fuzzer does not know";

/// Token parsing and verification: never panics, and never accepts a token it did not sign.
/// Also feeds the bytes to the channel pattern parser used for the token's grants.
pub fn token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ChannelPattern::parse_list(s);
    let verifier = match TokenVerifier::hs256(SECRET) {
        Ok(v) => v,
        Err(e) => panic!("fixed secret refused: {e}"),
    };
    if let Ok(claims) = verifier.verify(s) {
        panic!("a token not signed with the secret was accepted: {claims:?}");
    }
}

/// The WebSocket client message parser (`rt_ws::check_client_frame`): never panics on any
/// text or binary frame. The first byte chooses the frame kind, the rest is the frame.
pub fn ws_message(data: &[u8]) {
    let Some((kind, frame)) = data.split_first() else {
        return;
    };
    let binary = kind & 1 == 1;
    if let Err(e) = rt_ws::check_client_frame(frame, binary) {
        // A refusal is always answerable: a stable code and a message.
        assert!(!e.code().is_empty() && !e.to_string().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    /// Runs `target` over every file of `corpus/<name>`, which must not be empty.
    fn replay(name: &str, target: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            target(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "{} is empty", dir.display());
    }

    #[test]
    fn corpus_cursor() {
        replay("cursor", cursor);
    }

    #[test]
    fn corpus_publish() {
        replay("publish", publish);
    }

    #[test]
    fn corpus_token() {
        replay("token", token);
    }

    #[test]
    fn corpus_ws_message() {
        replay("ws_message", ws_message);
    }

    proptest! {
        #[test]
        fn cursor_like_strings(s in "[0-9a-f]{0,8}(,[a-z:]{1,4}=[0-9]{1,21}){0,4}|\\PC{0,40}") {
            cursor(s.as_bytes());
        }

        #[test]
        fn publish_like_json(
            channel in "\\PC{0,12}",
            data in "\\PC{0,12}",
            encoding in prop::option::of("base64|hex|\\PC{0,4}"),
            id in prop::option::of("\\PC{0,8}"),
        ) {
            let mut body = serde_json_like(&channel, &data);
            if let Some(e) = encoding {
                body.push_str(&format!(",\"encoding\":{e:?}"));
            }
            if let Some(id) = id {
                body.push_str(&format!(",\"id\":{id:?}"));
            }
            body.push('}');
            publish(body.as_bytes());
        }

        #[test]
        fn token_like_strings(s in "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,40}|\\PC{0,60}") {
            token(s.as_bytes());
        }

        #[test]
        fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
            cursor(&data);
            publish(&data);
            token(&data);
            ws_message(&data);
        }
    }

    fn serde_json_like(channel: &str, data: &str) -> String {
        format!("{{\"channel\":{channel:?},\"data\":{data:?}")
    }
}
