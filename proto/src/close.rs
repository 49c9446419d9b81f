//! WebSocket close codes the gateway sends, by what the client should do.

/// Why a session was closed. The numbers are the wire contract
/// (docs/protocol.md); clients branch on them, so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the session ended normally.
    Normal,
    /// 1001: the server is going away, or the client stopped answering
    /// heartbeats.
    GoingAway,
    /// 1002: the client broke the WebSocket protocol.
    ProtocolError,
    /// 1003: a binary frame; Sluice speaks text (JSON) only.
    Unsupported,
    /// 1007: a text frame that is not UTF-8.
    InvalidData,
    /// 1008: policy: authentication, origin, too many sessions or bad frames.
    Policy,
    /// 1009: a message over `gateway.max_message_bytes`.
    TooBig,
    /// 1011: a fault inside the gateway.
    Internal,
    /// 1012: the gateway restarts (drain): reconnect elsewhere and resume.
    Restarting,
    /// 1013: try again later: a dependency is down, or the client read too slowly.
    TryAgainLater,
    /// 4001: the session's token expired (no `refresh` came in time): get a
    /// fresh token and reconnect with `resume`.
    TokenExpired,
}

impl CloseCode {
    /// Every close code, for tables and tests.
    pub const ALL: [CloseCode; 11] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::ProtocolError,
        CloseCode::Unsupported,
        CloseCode::InvalidData,
        CloseCode::Policy,
        CloseCode::TooBig,
        CloseCode::Internal,
        CloseCode::Restarting,
        CloseCode::TryAgainLater,
        CloseCode::TokenExpired,
    ];

    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::Restarting => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::TokenExpired => 4001,
        }
    }

    /// The close code numbered `code`, if Sluice sends it.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        CloseCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_round_trip() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
        }
        let mut numbers: Vec<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), CloseCode::ALL.len());
        assert_eq!(CloseCode::from_code(1005), None);
        assert_eq!(u16::from(CloseCode::Restarting), 1012);
    }
}
