//! `sqlx` encode/decode for ids and enums (feature `sqlx`, enabled by the server only).
//!
//! Every one of them is stored as text through `sqlx::Any`: an id as its hyphenated
//! lowercase UUID, an enum as its wire form (`as_str`). Decoding parses, so a stored
//! value that is not a valid id or a known variant is a decode error naming the type —
//! the row is corrupt — instead of a string that each caller has to parse and check.

use sqlx::any::AnyTypeInfo;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Any, Database, Decode, Encode, Type};

use crate::accounts::{DirectoryScope, OrganizationKind, Profession, UserKind, UserRole};
use crate::apps::Scope;
use crate::files::FileKind;
use crate::ids::{
    ApiClientId, FileId, GroupId, InvitationId, MessageId, OrganizationId, RegionId, SessionId,
    ThreadId, UserId,
};
use crate::messaging::{GroupKind, MemberRole, ThreadKind};

/// `Type`, `Encode` and `Decode` over `Any` as text: ids through `Display`/`FromStr`,
/// wire enums through `as_str`/`parse`.
macro_rules! as_text {
    (ids: $($name:ident),+ $(,)?) => {
        as_text!(@impl |v| v.to_string(), |s| s.parse().ok(); $($name),+);
    };
    (wire enums: $($name:ident),+ $(,)?) => {
        as_text!(@impl |v| v.as_str().to_owned(), |s| Self::parse(s); $($name),+);
    };
    (@impl $to:expr, $from:expr; $($name:ident),+) => { $(
        impl Type<Any> for $name {
            fn type_info() -> AnyTypeInfo {
                <String as Type<Any>>::type_info()
            }
            fn compatible(ty: &AnyTypeInfo) -> bool {
                <String as Type<Any>>::compatible(ty)
            }
        }

        impl<'q> Encode<'q, Any> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut <Any as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                let to: fn(&$name) -> String = $to;
                <String as Encode<'q, Any>>::encode(to(self), buf)
            }
        }

        impl<'r> Decode<'r, Any> for $name {
            fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as Decode<'r, Any>>::decode(value)?;
                let from: fn(&str) -> Option<$name> = $from;
                from(&text).ok_or_else(|| {
                    format!(concat!("not a valid ", stringify!($name), ": {:?}"), text).into()
                })
            }
        }
    )+ };
}

as_text!(
    ids: RegionId, OrganizationId, UserId, GroupId, ThreadId, MessageId, InvitationId, FileId,
    SessionId, ApiClientId,
);

as_text!(
    wire enums: OrganizationKind, Profession, UserRole, UserKind, GroupKind, MemberRole, ThreadKind,
    FileKind, Scope, DirectoryScope,
);
