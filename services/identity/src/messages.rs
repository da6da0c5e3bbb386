//! What identity publishes on the bus. Every registration, through the
//! sign-up API or the admin bootstrap, is an `identity.user-registered.v1`
//! event staged in the outbox in the transaction that creates the user.

use crate::domain::{USER_REGISTERED_V1, UserEvent, UserRegistered};

impl bus::Message for UserRegistered {
    const TYPE: &'static str = USER_REGISTERED_V1;
    const KIND: bus::Kind = bus::Kind::Event;
}

/// The envelope of `event`, published by identity about the user.
pub fn envelope(event: &UserEvent) -> Result<bus::Envelope, serde_json::Error> {
    match event {
        UserEvent::Registered(registered) => {
            bus::Envelope::new(crate::NAME, &registered.user_id.to_string(), registered)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DisplayName, Email, UserId};

    #[test]
    fn a_registration_travels_as_a_versioned_event_about_the_user() {
        let user_id = UserId::new();
        let event = UserEvent::Registered(UserRegistered {
            user_id,
            email: Email::parse("ada@example.com").unwrap(),
            name: DisplayName::parse("Ada").unwrap(),
        });
        let envelope = envelope(&event).unwrap();
        assert_eq!(envelope.message_type, "identity.user-registered.v1");
        assert_eq!((envelope.source.as_str(), envelope.subject.clone()), ("identity", user_id.to_string()));
        assert_eq!(envelope.data["email"], "ada@example.com");
        assert_eq!(envelope.decode::<UserRegistered>().unwrap().name.as_str(), "Ada");
    }
}
