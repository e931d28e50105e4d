//! Published ports: each checked free on the machine before netavark's
//! DNAT rule would silently take it from a host service.

use std::net::{IpAddr, Ipv4Addr};

use super::{NetError, PortMap};

/// Host ports given as 0 get a free one; every port is checked free on
/// the machine (a DNAT rule would otherwise take a port a host service
/// listens on, silently). `taken` are ports other containers publish.
pub fn bind_ports(ports: &[PortMap], taken: &[PortMap]) -> Result<Vec<PortMap>, NetError> {
    let mut bound: Vec<PortMap> = Vec::new();
    for p in ports {
        let addr: IpAddr = if p.host_ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            p.host_ip
                .parse()
                .map_err(|_| NetError::PortInUse(format!("{:?} is not an IP address", p.host_ip)))?
        };
        let clash = |port: u16| {
            taken.iter().chain(bound.iter()).any(|t| {
                t.host_port == port
                    && t.protocol == p.protocol
                    && (t.host_ip.is_empty() || p.host_ip.is_empty() || t.host_ip == p.host_ip)
            })
        };
        let shown = |port: u16| {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            format!("{ip}:{port}")
        };
        if p.host_port != 0 && clash(p.host_port) {
            return Err(NetError::PortInUse(format!(
                "Bind for {} failed: port is already allocated",
                shown(p.host_port)
            )));
        }
        // Binding tells whether a host process holds the port, and for 0
        // which one is free. The socket closes at once.
        let probe = |port: u16| -> std::io::Result<u16> {
            let sa = std::net::SocketAddr::new(addr, port);
            if p.protocol == "udp" {
                std::net::UdpSocket::bind(sa)?
                    .local_addr()
                    .map(|a| a.port())
            } else {
                std::net::TcpListener::bind(sa)?
                    .local_addr()
                    .map(|a| a.port())
            }
        };
        let mut port = 0;
        for _ in 0..16 {
            let got = probe(p.host_port).map_err(|e| {
                // Go's words, as Docker's message has them.
                let why = match e.raw_os_error() {
                    Some(libc::EADDRINUSE) => "address already in use".to_owned(),
                    Some(libc::EADDRNOTAVAIL) => "cannot assign requested address".to_owned(),
                    _ => e.to_string(),
                };
                NetError::PortInUse(format!("Bind for {} failed: {why}", shown(p.host_port)))
            })?;
            if !clash(got) {
                port = got;
                break;
            }
        }
        if port == 0 {
            return Err(NetError::PortInUse(format!(
                "no free {} port on {}",
                p.protocol,
                shown(0)
            )));
        }
        bound.push(PortMap {
            host_port: port,
            ..p.clone()
        });
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_use_are_refused_and_zero_gets_a_free_one() {
        let tcp = |host_port| PortMap {
            host_ip: "127.0.0.1".into(),
            host_port,
            container_port: 80,
            protocol: "tcp".into(),
        };
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let e = bind_ports(&[tcp(port)], &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("Bind for 127.0.0.1:{port} failed: address already in use")
        );
        drop(held);
        assert_eq!(bind_ports(&[tcp(port)], &[]).unwrap()[0].host_port, port);
        let e = bind_ports(&[tcp(port)], &[tcp(port)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already allocated"), "{e}");
        let picked = bind_ports(&[tcp(0), tcp(0)], &[]).unwrap();
        assert_ne!(picked[0].host_port, 0);
        assert_ne!(picked[0].host_port, picked[1].host_port);
    }
}
