//! Pagination cursors and page requests.

use base64::{Engine, engine::general_purpose::STANDARD};
use latchkey::{
    Error,
    domain::pagination::{MAX_PAGE_SIZE, PageRequest, decode_cursor, encode_cursor},
    error::Code,
};
use proptest::prelude::*;
use uuid::Uuid;

fn is_bad_input<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(err) if err.code() == Code::BadUserInput)
}

/// What a client might send as a cursor: anything, base64 of anything, or a real cursor
/// with a character changed.
fn cursor_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| STANDARD.encode(bytes)),
        (any::<u128>(), any::<prop::sample::Index>(), any::<char>()).prop_map(|(id, at, c)| {
            let mut cursor: Vec<char> = encode_cursor(Uuid::from_u128(id)).chars().collect();
            let at = at.index(cursor.len());
            cursor[at] = c;
            cursor.into_iter().collect()
        }),
    ]
}

proptest! {
    #[test]
    fn every_cursor_decodes_to_the_id_it_was_made_from(id in any::<u128>(), pad in "[ \t]{0,2}") {
        let id = Uuid::from_u128(id);
        let cursor = encode_cursor(id);
        prop_assert_eq!(decode_cursor(&cursor).ok(), Some(id));
        prop_assert_eq!(decode_cursor(&format!("{pad}{cursor}{pad}")).ok(), Some(id));
    }

    #[test]
    fn a_cursor_that_is_not_base64_of_an_id_is_bad_user_input(cursor in cursor_like()) {
        let decoded = decode_cursor(&cursor);
        let meant = STANDARD
            .decode(cursor.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| Uuid::parse_str(&text).ok());
        match meant {
            Some(id) => prop_assert_eq!(decoded.ok(), Some(id)),
            None => prop_assert!(is_bad_input(&decoded), "{cursor:?} gave {decoded:?}"),
        }
    }

    #[test]
    fn page_requests_take_one_direction_bounded_sizes_and_valid_cursors_only(
        first in prop::option::of(-5..MAX_PAGE_SIZE as i32 + 5),
        last in prop::option::of(prop_oneof![any::<i32>(), -5..MAX_PAGE_SIZE as i32 + 5]),
        after in prop::option::of(prop_oneof![any::<u128>().prop_map(|id| encode_cursor(Uuid::from_u128(id))), cursor_like()]),
        before in prop::option::of(any::<u128>().prop_map(|id| encode_cursor(Uuid::from_u128(id)))),
    ) {
        let request = PageRequest::new(first, after.as_deref(), last, before.as_deref());
        let size_ok = |size: i32| (0..=MAX_PAGE_SIZE as i32).contains(&size);
        let valid = after.as_deref().is_none_or(|cursor| decode_cursor(cursor).is_ok())
            && match (first, last) {
                (Some(_), Some(_)) => false,
                (Some(size), None) | (None, Some(size)) => size_ok(size),
                (None, None) => true,
            };
        if valid {
            prop_assert!(request.is_ok(), "{request:?}");
        } else {
            prop_assert!(is_bad_input(&request), "{request:?}");
        }
    }
}
