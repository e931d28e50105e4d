//! Bringing up the loopback interface over rtnetlink. Everything else about
//! networking belongs to the network service; `lo` is init's because
//! programs started before it (and the service manager's own API) expect
//! 127.0.0.1 to work.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {name}: {source}")]
    NoSuchInterface {
        name: String,
        source: nix::errno::Errno,
    },
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink reply could not be decoded: {0}")]
    Decode(String),
    #[error("setting {name} up: {source}")]
    Refused {
        name: String,
        source: std::io::Error,
    },
    #[error("no reply from the kernel")]
    NoReply,
}

/// The RTM_SETLINK request that sets `IFF_UP` on interface `index` and
/// leaves every other flag alone (the change mask names only `IFF_UP`).
pub fn set_up_request(index: u32, sequence: u32) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    link.header.flags = LinkFlags::Up;
    link.header.change_mask = LinkFlags::Up;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = sequence;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::SetLink(link)),
    );
    msg.finalize();
    msg
}

/// Sets interface `name` up and waits for the kernel's acknowledgement.
pub fn set_link_up(name: &str) -> Result<(), NetError> {
    let index =
        nix::net::if_::if_nametoindex(name).map_err(|source| NetError::NoSuchInterface {
            name: name.to_owned(),
            source,
        })?;
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetError::Socket)?;
    socket.bind_auto().map_err(NetError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetError::Socket)?;

    let msg = set_up_request(index, 1);
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0).map_err(NetError::Socket)?;

    let mut reply = Vec::with_capacity(8192);
    socket.recv(&mut reply, 0).map_err(NetError::Socket)?;
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|e| NetError::Decode(e.to_string()))?;
    match parsed.payload {
        // An error message without a code is the acknowledgement.
        NetlinkPayload::Error(e) if e.code.is_none() => Ok(()),
        NetlinkPayload::Error(e) => Err(NetError::Refused {
            name: name.to_owned(),
            source: e.to_io(),
        }),
        _ => Err(NetError::NoReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_only_changes_the_up_flag() {
        let msg = set_up_request(1, 7);
        assert_eq!(msg.header.sequence_number, 7);
        assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::SetLink(link)) = &msg.payload else {
            panic!("not a SetLink: {:?}", msg.payload);
        };
        assert_eq!(link.header.index, 1);
        assert_eq!(link.header.flags, LinkFlags::Up);
        assert_eq!(link.header.change_mask, LinkFlags::Up);

        // It survives a round trip through the wire format.
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        let back = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn a_missing_interface_is_named() {
        let err = set_link_up("corral-nope0").unwrap_err();
        assert!(
            err.to_string().starts_with("interface corral-nope0: "),
            "{err}"
        );
    }
}
