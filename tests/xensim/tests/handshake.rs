//! Runs the `handshake` example's scenario and checks what it saw.

#[path = "../examples/handshake.rs"]
#[allow(dead_code)]
mod handshake;

use xenbus::XenbusState;

#[test]
fn echo_device_connects_serves_and_closes() {
    let outcome = handshake::run().expect("scenario runs to the end");
    assert_eq!(outcome.backend_connected, Some(XenbusState::Connected));
    assert_eq!(outcome.frontend_connected, Some(XenbusState::Connected));
    assert_eq!(outcome.responses, vec![(1, 2), (2, 40), (3, 600)]);
    assert_eq!(
        outcome.final_states,
        Some((XenbusState::Closed, XenbusState::Closed))
    );
    assert!(outcome.ring_grant_revoked, "the backend unmapped the ring");
}
