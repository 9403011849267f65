//! The sans-IO core: the SMTP server session state machine, its options, events and the
//! relay policy helper. No sockets, no tokio, no clock: time and bytes are inputs.

mod clock;
mod event;
mod headers;
mod options;
mod relay;
mod session;

pub use clock::WallClock;
pub use event::{
    AbortReason, CloseReason, CommandId, ConnectionInfo, Context, Envelope, Event, Recipient,
    UsageError,
};
pub use options::{HeaderName, InvalidHeaderName, Options, ReceivedHeader};
pub use relay::{
    FromMatch, InvalidIpNet, IpNet, RecipientKind, RelayContext, RelayMode, RelayPolicy,
};
pub use session::{MAX_REPLY_LINE, Session, SharedStore};
