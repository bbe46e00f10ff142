//! Which NXCLOUD push a body is. Customers may give NXCLOUD one URL for both PNS pushes, so
//! the body's shape decides: an `id` makes a call record, a `requestId` without one a binding
//! error. A body with neither is judged as the push its route expects.

use crate::binding::{BindingError, ParsedBindingError};
use crate::cdr::{CallRecord, InvalidPush, ParsedPush, PushObject};

/// The two PNS pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    CallRecord,
    BindingError,
}

/// A parsed push of either kind.
// Lives once per push on the stack, then moves into its item: boxing the larger call record
// would add an allocation to the webhook's hot path for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    CallRecord(ParsedPush),
    BindingError(ParsedBindingError),
}

/// Parses `body` as the push its shape says, else as `expected`. The error names the kind
/// the body was judged as.
pub fn parse(body: &[u8], expected: PushKind) -> Result<Push, (PushKind, InvalidPush)> {
    let object = PushObject::read(body).map_err(|e| (expected, e))?;
    let kind = if object.has("id") {
        PushKind::CallRecord
    } else if object.has("requestId") {
        PushKind::BindingError
    } else {
        expected
    };
    match kind {
        PushKind::CallRecord => CallRecord::from_object(object).map(Push::CallRecord),
        PushKind::BindingError => BindingError::from_object(object).map(Push::BindingError),
    }
    .map_err(|e| (kind, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &[u8] = include_bytes!("../../events/bodies/call-result.json");
    const BINDING: &[u8] = include_bytes!("../../events/bodies/binding-error.json");

    #[test]
    fn the_shape_decides_whatever_the_route() {
        for expected in [PushKind::CallRecord, PushKind::BindingError] {
            assert!(matches!(parse(CALL, expected), Ok(Push::CallRecord(_))));
            assert!(matches!(
                parse(BINDING, expected),
                Ok(Push::BindingError(_))
            ));
        }
        let neither = br#"{"code":1}"#;
        assert_eq!(
            parse(neither, PushKind::CallRecord)
                .unwrap_err()
                .1
                .field
                .as_deref(),
            Some("id")
        );
        assert_eq!(
            parse(neither, PushKind::BindingError)
                .unwrap_err()
                .1
                .field
                .as_deref(),
            Some("requestId")
        );
        let (kind, e) = parse(b"[1]", PushKind::BindingError).unwrap_err();
        assert_eq!((kind, e.field), (PushKind::BindingError, None));
    }
}
