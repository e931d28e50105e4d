//! Links, addresses and routes over rtnetlink: the few requests the
//! network service makes, each waiting for the kernel's acknowledgement so
//! a refusal is reported with the request that caused it.

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink reply could not be decoded: {0}")]
    Decode(String),
    #[error("{what}: {source}")]
    Refused {
        what: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// A network interface as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub ethernet: bool,
    pub up: bool,
}

pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request; returns the messages of a dump, or nothing once
    /// the acknowledgement arrives.
    fn request(
        &mut self,
        what: &str,
        payload: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(NetlinkError::Socket)?;

        let mut out = Vec::new();
        loop {
            let mut reply = Vec::with_capacity(65536);
            self.socket
                .recv(&mut reply, 0)
                .map_err(NetlinkError::Socket)?;
            let mut offset = 0;
            while offset < reply.len() {
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                    .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let len = parsed.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode("zero-length message".into()));
                }
                offset += len;
                if parsed.header.sequence_number != self.sequence {
                    continue;
                }
                match parsed.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return Err(NetlinkError::Refused {
                            what: what.to_owned(),
                            source: e.to_io(),
                        })
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            "listing links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut links = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewLink(l) = m {
                let name = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                });
                links.push(Link {
                    index: l.header.index,
                    name: name.unwrap_or_default(),
                    ethernet: l.header.link_layer_type == LinkLayerType::Ether,
                    up: l.header.flags.contains(LinkFlags::Up),
                });
            }
        }
        Ok(links)
    }

    /// Sets the link up, with `mtu` if given.
    pub fn set_up(&mut self, link: &Link, mtu: Option<u32>) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = link.index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let what = match mtu {
            Some(mtu) => format!("{}: setting it up with MTU {mtu}", link.name),
            None => format!("{}: setting it up", link.name),
        };
        self.request(&what, RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
        Ok(())
    }

    fn address_message(link: &Link, addr: IpAddr, prefix: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(addr);
        m.header.prefix_len = prefix;
        m.header.index = link.index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        if let IpAddr::V4(v4) = addr {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            m.attributes
                .push(AddressAttribute::Broadcast((u32::from(v4) | !mask).into()));
        }
        m
    }

    /// Adds (or refreshes) an address.
    pub fn add_address(&mut self, link: &Link, addr: IpAddr, prefix: u8) -> Result<()> {
        self.request(
            &format!("{}: adding address {addr}/{prefix}", link.name),
            RouteNetlinkMessage::NewAddress(Self::address_message(link, addr, prefix)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Removes every IPv4 address of the link except `keep`.
    pub fn flush_ipv4(&mut self, link: &Link, keep: &[IpAddr]) -> Result<()> {
        let msgs = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != link.index || a.header.family != AddressFamily::Inet {
                continue;
            }
            let addr = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            if addr.is_some_and(|a| keep.contains(&a)) {
                continue;
            }
            let shown = addr.map(|a| a.to_string()).unwrap_or_default();
            self.request(
                &format!("{}: removing address {shown}", link.name),
                RouteNetlinkMessage::DelAddress(a),
                NLM_F_ACK,
            )?;
        }
        Ok(())
    }

    /// Sets the default route of the address family through `gateway` on
    /// the link, replacing any other.
    pub fn default_route(&mut self, link: &Link, gateway: IpAddr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(gateway);
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(match gateway {
            IpAddr::V4(v) => RouteAddress::Inet(v),
            IpAddr::V6(v) => RouteAddress::Inet6(v),
        }));
        m.attributes.push(RouteAttribute::Oif(link.index));
        self.request(
            &format!("{}: default route via {gateway}", link.name),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_carry_their_broadcast() {
        let link = Link {
            index: 2,
            name: "eth0".into(),
            ethernet: true,
            up: false,
        };
        let m = Netlink::address_message(&link, "10.0.2.15".parse().unwrap(), 24);
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.index, 2);
        assert!(m
            .attributes
            .contains(&AddressAttribute::Broadcast("10.0.2.255".parse().unwrap())));
        let m = Netlink::address_message(&link, "fd00::2".parse().unwrap(), 64);
        assert_eq!(m.header.family, AddressFamily::Inet6);
    }

    #[test]
    fn loopback_is_listed_as_not_ethernet() {
        // Every Linux network namespace has lo, index 1.
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        let lo = links.iter().find(|l| l.name == "lo").expect("lo listed");
        assert!(!lo.ethernet);
        assert_eq!(lo.index, 1);
    }
}
