//! Why a request got its node: the [`Decision`] (honoured, new, moved, none) and its [`Source`]
//! (what decided it), each logged and counted per upstream in the order of its `ALL`.

/// Why a client got the node it got; logged and counted (in this order in the pool's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A valid pin was honoured (or ip_hash chose the ring owner).
    Hit,
    /// No pin: a first pick.
    New,
    /// The client's pin was unusable (node gone or refused): moved to another node.
    Repinned,
    /// No stickiness configured.
    Unpinned,
}

impl Decision {
    pub const ALL: [Decision; 4] = [
        Decision::Hit,
        Decision::New,
        Decision::Repinned,
        Decision::Unpinned,
    ];

    /// The label metrics and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Hit => "hit",
            Decision::New => "new",
            Decision::Repinned => "repinned",
            Decision::Unpinned => "unpinned",
        }
    }
}

/// What decided a request's node (counted per upstream, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// A valid affinity cookie.
    Cookie,
    /// A valid engine.io session id tag.
    Sid,
    /// The client's IP address on the hash ring.
    IpHash,
    /// The request's key (key affinity) on the hash ring.
    Key,
    /// A pick by the balance policy: a first visit, a re-pin, or no stickiness.
    #[default]
    New,
}

impl Source {
    pub const ALL: [Source; 5] = [
        Source::Cookie,
        Source::Sid,
        Source::IpHash,
        Source::Key,
        Source::New,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Cookie => "cookie",
            Source::Sid => "sid",
            Source::IpHash => "ip_hash",
            Source::Key => "key",
            Source::New => "new",
        }
    }
}
