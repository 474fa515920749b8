//! Typed ids parsed from client input.

use latchkey::{
    error::Code,
    ids::{AuthenticationId, EnvironmentId, InstanceId, MasterTokenId, OrgId, ServiceId, SolutionId, UserId},
};
use proptest::prelude::*;
use uuid::Uuid;

/// Runs `$check` for every id type, so one that parses differently is caught.
macro_rules! for_every_id {
    ($check:ident ( $($arg:expr),* )) => {{
        $check!(OrgId, $($arg),*);
        $check!(UserId, $($arg),*);
        $check!(MasterTokenId, $($arg),*);
        $check!(ServiceId, $($arg),*);
        $check!(EnvironmentId, $($arg),*);
        $check!(SolutionId, $($arg),*);
        $check!(InstanceId, $($arg),*);
        $check!(AuthenticationId, $($arg),*);
    }};
}

macro_rules! round_trips {
    ($id:ident, $uuid:expr, $text:expr) => {
        prop_assert_eq!($id::parse($text).ok(), Some($id($uuid)));
        prop_assert_eq!($id::parse(&$id($uuid).to_string()).ok(), Some($id($uuid)));
    };
}

macro_rules! refused_briefly {
    ($id:ident, $text:expr) => {
        let err = $id::parse($text).expect_err("refused");
        prop_assert_eq!(err.code(), Code::BadUserInput);
        // The message quotes at most 64 characters of the input.
        let message = err.public_message();
        prop_assert!(message.chars().count() <= 64 + 60, "{message}");
    };
}

/// Any string that does not read as a UUID (after trimming).
fn not_a_uuid() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        ".{100,400}",
        // a real id with one character replaced by one that is not hex
        (any::<u128>(), any::<prop::sample::Index>(), "[g-zG-Z!-,./:;@_~ é]").prop_map(|(id, at, c)| {
            let mut text: Vec<char> = Uuid::from_u128(id).to_string().chars().collect();
            let at = at.index(text.len());
            text[at] = c.chars().next().unwrap_or('x');
            text.into_iter().collect()
        }),
    ]
    .prop_filter("reads as a UUID", |text| Uuid::parse_str(text.trim()).is_err())
}

proptest! {
    #[test]
    fn every_uuid_parses_back_to_the_same_id(id in any::<u128>(), upper in any::<bool>(), pad in "[ \t\n]{0,2}") {
        let uuid = Uuid::from_u128(id);
        let text = if upper { uuid.to_string().to_uppercase() } else { uuid.to_string() };
        let text = format!("{pad}{text}{pad}");
        for_every_id!(round_trips(uuid, &text));
    }

    #[test]
    fn anything_else_is_refused_as_bad_user_input_without_echoing_it(text in not_a_uuid()) {
        for_every_id!(refused_briefly(&text));
    }
}
