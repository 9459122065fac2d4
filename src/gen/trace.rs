//! `flowpol gen trace`: a deterministic generator of realistic IPv6 captures.
//!
//! The same seed gives the same bytes on every machine (ChaCha8, no floating point in the
//! packet contents). Frames are built with etherparse's builders (IPv6, extension headers,
//! TCP/UDP/ICMPv6, checksums) behind a link header written here: Ethernet by default, with VLAN
//! tags where the address plan says so, or raw IP, BSD NULL, Linux SLL or SLL2 (`--link`; the
//! IPv6 packets are the same whatever the link). Timestamps start at 2026-01-01T00:00:00Z and
//! advance 10 µs–2 ms per frame. The cost per frame does not grow with the number of flows (a
//! flow is drawn by binary search over cumulative weights): 1 M flows × 5 M frames take 30 s in
//! a release build, 100 k flows × 200 k frames 0.4 s.
//!
//! The bundled `tests/data/demo.pcap` is [`DEMO`]:
//! `flowpol gen trace --flows 40 --packets 1500 --seed 6437 --out tests/data/demo.pcap`.
//!
//! # Address plan (the bundled demo policy is written against it)
//!
//! | who                              | prefix              | link                          |
//! |----------------------------------|---------------------|-------------------------------|
//! | clients, site A                  | `2001:db8:a::/48`   | Ethernet                      |
//! | clients, site B                  | `2001:db8:b::/48`   | Ethernet                      |
//! | clients, site C                  | `2001:db8:c::/48`   | Ethernet, 802.1Q VLAN 100     |
//! | clients, lab (ULA)               | `fd00:1::/64`       | Ethernet, QinQ 10 / 200       |
//! | web servers, tcp/443             | `2001:db8:ff::10`–`::13` |                          |
//! | DNS resolver, udp/53             | `2001:db8:ff::53`   |                               |
//! | media servers, udp/5004-5005     | `2001:db8:fe::10`–`::13` |                          |
//! | IPsec gateway, ESP               | `2001:db8:fe::50`   |                               |
//!
//! Flows (each picks one of about `flows / 4` client hosts, so a host often has several flows
//! to the same server; clients use ephemeral ports 32768–60999):
//! - **web** (35 %): TCP client → server port 443, handshake then requests and responses in
//!   both directions. Client labels: constant random (50 %), re-drawn mid-flow like Linux after
//!   a retransmission timeout (30 %, each later client packet re-draws with probability 1/15), or
//!   zero (20 %). The server answers with its own constant random label (zero if the client's is).
//! - **dns** (20 %): UDP queries to `2001:db8:ff::53` port 53 and responses; labels zero (50 %) or
//!   constant random; one response in 8 is 1800 bytes and is fragmented (first and non-first
//!   fragment).
//! - **media** (20 %): one-way UDP from client port 5004 or 5005 to a media server, same port;
//!   the sender sets the label, drawn from `0x10000`–`0x1ffff`; one datagram in 4 is larger than
//!   the MTU and fragmented.
//! - **echo** (15 %): ICMPv6 echo request/reply to any server address; labels constant random
//!   or zero.
//! - **esp** (10 %): ESP both ways between the client and the gateway (no ports: the 5-tuple is
//!   unavailable), constant random labels.
//!
//! Extension headers, chosen per flow on client packets: hop-by-hop options (10 % of flows),
//! destination options (10 %), a segment routing header with no segments left (8 %).
//! About 3 % of frames are not IPv6: ARP requests and IPv4/UDP.

use crate::packet::LinkType;
use crate::source::pcap::FrameWriter;
use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions, PacketBuilder,
    TcpHeader,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io;
use std::time::Duration;

/// The first timestamp, 2026-01-01T00:00:00Z.
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// The arguments of a generated trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceConfig {
    /// Number of flows.
    pub flows: usize,
    /// Exact number of frames written.
    pub packets: usize,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
    /// Link type of the frames: Ethernet (with VLAN tags), raw IP, BSD NULL, Linux SLL or SLL2.
    pub link: LinkType,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            flows: 48,
            packets: 2000,
            seed: 1,
            link: LinkType::ETHERNET,
        }
    }
}

/// The settings of the bundled demo capture `tests/data/demo.pcap`.
pub const DEMO: TraceConfig = TraceConfig {
    flows: 40,
    packets: 1500,
    seed: 6437,
    link: LinkType::ETHERNET,
};

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    pub frames: u64,
    pub ipv6: u64,
    pub flows: u64,
}

/// The link types the generator can write.
pub const LINKS: [LinkType; 5] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::NULL,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
];

const P_WEB: u128 = 0x2001_0db8_00ff_0000_0000_0000_0000_0010;
const P_DNS: u128 = 0x2001_0db8_00ff_0000_0000_0000_0000_0053;
const P_MEDIA: u128 = 0x2001_0db8_00fe_0000_0000_0000_0000_0010;
const P_ESP_GW: u128 = 0x2001_0db8_00fe_0000_0000_0000_0000_0050;

/// Client prefixes: (prefix, prefix length, VLAN tags).
const CLIENTS: [(u128, u32, Vlan); 4] = [
    (0x2001_0db8_000a << 80, 48, Vlan::None),
    (0x2001_0db8_000b << 80, 48, Vlan::None),
    (0x2001_0db8_000c << 80, 48, Vlan::Single(100)),
    (0xfd00_0001 << 96, 64, Vlan::Double(10, 200)),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vlan {
    None,
    Single(u16),
    Double(u16, u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Web,
    Dns,
    Media,
    Echo,
    Esp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    Constant,
    Zero,
    Redrawn,
    SenderSet,
}

#[derive(Clone, Debug)]
struct Flow {
    kind: Kind,
    client: u128,
    server: u128,
    cport: u16,
    sport: u16,
    vlan: Vlan,
    mac_c: [u8; 6],
    mac_s: [u8; 6],
    strategy: Strategy,
    label_c: u32,
    label_s: u32,
    hbh: bool,
    dst_opts: bool,
    srh: bool,
    weight: u32,
    sent: u32,
    seq_c: u32,
    seq_s: u32,
    spi_c: u32,
    spi_s: u32,
}

fn random_label(rng: &mut ChaCha8Rng) -> u32 {
    rng.random_range(1..=0xf_ffffu32)
}

impl Flow {
    fn new(rng: &mut ChaCha8Rng, hosts: &[(u128, Vlan)]) -> Flow {
        let kind = match rng.random_range(0..100u32) {
            0..35 => Kind::Web,
            35..55 => Kind::Dns,
            55..75 => Kind::Media,
            75..90 => Kind::Echo,
            _ => Kind::Esp,
        };
        let (client, vlan) = hosts[rng.random_range(0..hosts.len())];
        let server = match kind {
            Kind::Web => P_WEB + rng.random_range(0..4u128),
            Kind::Dns => P_DNS,
            Kind::Media => P_MEDIA + rng.random_range(0..4u128),
            Kind::Echo => match rng.random_range(0..3u32) {
                0 => P_WEB + rng.random_range(0..4u128),
                1 => P_DNS,
                _ => P_MEDIA + rng.random_range(0..4u128),
            },
            Kind::Esp => P_ESP_GW,
        };
        let (cport, sport) = match kind {
            Kind::Web => (rng.random_range(32768..61000u16), 443),
            Kind::Dns => (rng.random_range(32768..61000u16), 53),
            Kind::Media => {
                let p = rng.random_range(5004..=5005u16);
                (p, p)
            }
            Kind::Echo | Kind::Esp => (0, 0),
        };
        let strategy = match kind {
            Kind::Web => match rng.random_range(0..10u32) {
                0..5 => Strategy::Constant,
                5..8 => Strategy::Redrawn,
                _ => Strategy::Zero,
            },
            Kind::Dns | Kind::Echo => {
                if rng.random_bool(0.5) {
                    Strategy::Zero
                } else {
                    Strategy::Constant
                }
            }
            Kind::Media => Strategy::SenderSet,
            Kind::Esp => Strategy::Constant,
        };
        let (label_c, label_s) = match strategy {
            Strategy::Zero => (0, 0),
            Strategy::SenderSet => (rng.random_range(0x10000..=0x1ffffu32), 0),
            Strategy::Constant | Strategy::Redrawn => (random_label(rng), random_label(rng)),
        };
        let mut mac_c = [0x02, 0x00, 0, 0, 0, 0];
        mac_c[2..6].copy_from_slice(&(client as u32).to_be_bytes());
        Flow {
            kind,
            client,
            server,
            cport,
            sport,
            vlan,
            mac_c,
            mac_s: [0x02, 0xff, 0, 0, 0, 1],
            strategy,
            label_c,
            label_s,
            hbh: rng.random_range(0..100u32) < 10,
            dst_opts: rng.random_range(0..100u32) < 10,
            srh: rng.random_range(0..100u32) < 8,
            weight: rng.random_range(1..=10u32),
            sent: 0,
            seq_c: rng.random(),
            seq_s: rng.random(),
            spi_c: rng.random_range(0x100..u32::MAX),
            spi_s: rng.random_range(0x100..u32::MAX),
        }
    }
}

/// A non-IPv6 frame: EtherType, destination MAC, source MAC, bytes after the link header.
type Noise = (u16, [u8; 6], [u8; 6], Vec<u8>);

/// One IP packet to put on the wire, before the link header.
struct Out {
    from_client: bool,
    ip: Vec<u8>,
}

/// Builds the generator's frames and hands them to `out`.
pub struct Generator {
    rng: ChaCha8Rng,
    flows: Vec<Flow>,
    /// `cumulative[i]` is the sum of the weights of flows `0..=i`: a flow is picked by binary
    /// search, so the cost per packet does not grow with the number of flows.
    cumulative: Vec<u64>,
    frag_id: u32,
}

fn ipv6_header(src: u128, dst: u128, label: u32) -> Ipv6Header {
    Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::try_new(label & 0xf_ffff).unwrap_or(Ipv6FlowLabel::ZERO),
        payload_length: 0,
        next_header: IpNumber(0),
        hop_limit: 64,
        source: src.to_be_bytes(),
        destination: dst.to_be_bytes(),
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Generator {
    pub fn new(cfg: &TraceConfig) -> Generator {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        // Client hosts: about one per four flows, so hosts open several flows to the same server.
        let hosts: Vec<(u128, Vlan)> = (0..(cfg.flows / 4).max(2))
            .map(|_| {
                let (prefix, len, vlan) = CLIENTS[rng.random_range(0..CLIENTS.len())];
                let host = rng.random::<u128>() & (u128::MAX >> len);
                (prefix | host.max(1), vlan)
            })
            .collect();
        let flows: Vec<Flow> = (0..cfg.flows.max(1))
            .map(|_| Flow::new(&mut rng, &hosts))
            .collect();
        let cumulative = flows
            .iter()
            .scan(0u64, |sum, f| {
                *sum += u64::from(f.weight);
                Some(*sum)
            })
            .collect();
        Generator {
            rng,
            flows,
            cumulative,
            frag_id: 0x1000,
        }
    }

    /// A flow drawn with probability proportional to its weight: the first flow whose
    /// cumulative weight exceeds a uniform draw below the total. The draw is the same
    /// `u32` range as always, so a seed gives the same trace as before.
    fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let w = u64::from(
            self.rng
                .random_range(0..u32::try_from(total).unwrap_or(u32::MAX)),
        );
        self.cumulative
            .partition_point(|&c| c <= w)
            .min(self.flows.len() - 1)
    }

    fn payload(&mut self, lo: usize, hi: usize) -> Vec<u8> {
        let n = self.rng.random_range(lo..=hi);
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v[..]);
        v
    }

    /// Extension headers of a client packet of this flow.
    fn exts(f: &Flow) -> Ipv6Extensions {
        let opts = |pad: u8| Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, pad]).ok();
        Ipv6Extensions {
            // Router alert (MLD) in hop-by-hop, PadN in destination options.
            hop_by_hop_options: if f.hbh {
                Ipv6RawExtHeader::new_raw(IpNumber(0), &[5, 2, 0, 0, 1, 0]).ok()
            } else {
                None
            },
            destination_options: if f.dst_opts { opts(0) } else { None },
            routing: if f.srh {
                // SRH: routing type 4, segments left 0, last entry 0, one segment (the server).
                let mut srh = vec![4, 0, 0, 0, 0, 0];
                srh.extend_from_slice(&f.server.to_be_bytes());
                Ipv6RawExtHeader::new_raw(IpNumber(0), &srh)
                    .ok()
                    .map(|routing| Ipv6RoutingExtensions {
                        routing,
                        final_destination_options: None,
                    })
            } else {
                None
            },
            fragment: None,
            auth: None,
        }
    }

    /// The next packets of flow `i` (a fragmented datagram gives several).
    fn next_packets(&mut self, i: usize) -> io::Result<Vec<Out>> {
        let mut f = self.flows[i].clone();
        let n = f.sent;
        f.sent += 1;
        let mut out = Vec::new();
        match f.kind {
            Kind::Web => {
                let (from_client, syn, ack, payload) = match n {
                    0 => (true, true, false, Vec::new()),
                    1 => (false, true, true, Vec::new()),
                    2 => (true, false, true, Vec::new()),
                    _ => {
                        let c = self.rng.random_range(0..10u32) < 4;
                        let p = if c {
                            self.payload(40, 400)
                        } else {
                            self.payload(200, 1200)
                        };
                        (c, false, true, p)
                    }
                };
                if from_client
                    && f.strategy == Strategy::Redrawn
                    && n > 2
                    && self.rng.random_range(0..15u32) == 0
                {
                    f.label_c = random_label(&mut self.rng);
                }
                let (src, dst, sp, dp, label) = self.dir(&f, from_client);
                let (seq, ackn) = if from_client {
                    (f.seq_c, f.seq_s)
                } else {
                    (f.seq_s, f.seq_c)
                };
                let mut tcp = TcpHeader::new(sp, dp, seq, 64240);
                tcp.syn = syn;
                tcp.ack = ack;
                tcp.psh = !payload.is_empty();
                tcp.acknowledgment_number = if ack { ackn } else { 0 };
                let adv = payload.len() as u32 + u32::from(syn);
                if from_client {
                    f.seq_c = f.seq_c.wrapping_add(adv);
                } else {
                    f.seq_s = f.seq_s.wrapping_add(adv);
                }
                let exts = if from_client {
                    Self::exts(&f)
                } else {
                    Ipv6Extensions::default()
                };
                let mut v = Vec::new();
                PacketBuilder::ip(IpHeaders::Ipv6(ipv6_header(src, dst, label), exts))
                    .tcp_header(tcp)
                    .write(&mut v, &payload)
                    .map_err(io_err)?;
                out.push(Out { from_client, ip: v });
            }
            Kind::Dns => {
                let from_client = n.is_multiple_of(2);
                let payload = if from_client {
                    self.payload(28, 60)
                } else if self.rng.random_range(0..8u32) == 0 {
                    self.payload(1800, 1800)
                } else {
                    self.payload(60, 300)
                };
                self.udp(&f, from_client, &payload, &mut out)?;
            }
            Kind::Media => {
                let payload = if self.rng.random_range(0..4u32) == 0 {
                    self.payload(1500, 2400)
                } else {
                    self.payload(160, 1000)
                };
                self.udp(&f, true, &payload, &mut out)?;
            }
            Kind::Echo => {
                let from_client = n.is_multiple_of(2);
                let (src, dst, _, _, label) = self.dir(&f, from_client);
                let seq = (n / 2) as u16;
                let id = (i as u16).wrapping_add(0x100);
                let payload = self.payload(16, 56);
                let exts = if from_client {
                    Self::exts(&f)
                } else {
                    Ipv6Extensions::default()
                };
                let b = PacketBuilder::ip(IpHeaders::Ipv6(ipv6_header(src, dst, label), exts));
                let mut v = Vec::new();
                if from_client {
                    b.icmpv6_echo_request(id, seq).write(&mut v, &payload)
                } else {
                    b.icmpv6_echo_reply(id, seq).write(&mut v, &payload)
                }
                .map_err(io_err)?;
                out.push(Out { from_client, ip: v });
            }
            Kind::Esp => {
                let from_client = self.rng.random_bool(0.5);
                let (src, dst, _, _, label) = self.dir(&f, from_client);
                let spi = if from_client { f.spi_c } else { f.spi_s };
                let mut esp = Vec::new();
                esp.extend_from_slice(&spi.to_be_bytes());
                esp.extend_from_slice(&(n + 1).to_be_bytes());
                esp.extend_from_slice(&self.payload(64, 240));
                let exts = if from_client {
                    Self::exts(&f)
                } else {
                    Ipv6Extensions::default()
                };
                let mut v = Vec::new();
                PacketBuilder::ip(IpHeaders::Ipv6(ipv6_header(src, dst, label), exts))
                    .write(&mut v, IpNumber(50), &esp)
                    .map_err(io_err)?;
                out.push(Out { from_client, ip: v });
            }
        }
        self.flows[i] = f;
        Ok(out)
    }

    /// (src, dst, sport, dport, label) of a packet in one direction.
    fn dir(&self, f: &Flow, from_client: bool) -> (u128, u128, u16, u16, u32) {
        if from_client {
            (f.client, f.server, f.cport, f.sport, f.label_c)
        } else {
            (f.server, f.client, f.sport, f.cport, f.label_s)
        }
    }

    /// A UDP datagram, fragmented when it does not fit a 1500-byte MTU.
    fn udp(
        &mut self,
        f: &Flow,
        from_client: bool,
        payload: &[u8],
        out: &mut Vec<Out>,
    ) -> io::Result<()> {
        let (src, dst, sp, dp, label) = self.dir(f, from_client);
        let exts = if from_client {
            Self::exts(f)
        } else {
            Ipv6Extensions::default()
        };
        let mut whole = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(ipv6_header(src, dst, label), exts.clone()))
            .udp(sp, dp)
            .write(&mut whole, payload)
            .map_err(io_err)?;
        if whole.len() <= 1500 {
            out.push(Out {
                from_client,
                ip: whole,
            });
            return Ok(());
        }
        // Fragment the UDP datagram (header + payload), computed unfragmented for its checksum.
        let mut plain = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(
            ipv6_header(src, dst, label),
            Ipv6Extensions::default(),
        ))
        .udp(sp, dp)
        .write(&mut plain, payload)
        .map_err(io_err)?;
        let upper = &plain[40..];
        self.frag_id = self.frag_id.wrapping_add(1);
        const CHUNK: usize = 1232;
        let mut off = 0;
        while off < upper.len() {
            let end = (off + CHUNK).min(upper.len());
            let more = end < upper.len();
            let mut e = exts.clone();
            e.fragment = Some(Ipv6FragmentHeader::new(
                IpNumber(0),
                IpFragOffset::try_new((off / 8) as u16).map_err(io_err)?,
                more,
                self.frag_id,
            ));
            let mut v = Vec::new();
            PacketBuilder::ip(IpHeaders::Ipv6(ipv6_header(src, dst, label), e))
                .write(&mut v, IpNumber::UDP, &upper[off..end])
                .map_err(io_err)?;
            out.push(Out { from_client, ip: v });
            off = end;
        }
        Ok(())
    }

    /// A frame that is not IPv6: an ARP request (where the link type can carry one, else an
    /// IPv4 datagram) or an IPv4/UDP datagram, as (EtherType, destination MAC, source MAC,
    /// bytes after the link header). Draws the same random numbers whatever the link type, so
    /// the IPv6 frames of a trace do not depend on it.
    fn noise(&mut self, link: LinkType) -> io::Result<Noise> {
        let arp = self.rng.random_bool(0.5);
        let target = self.rng.random_range(2..254u8);
        let payload = self.payload(20, 200);
        let sport = self.rng.random_range(1024..65535u16);
        let mut v = Vec::new();
        let arp_link = matches!(
            link,
            LinkType::ETHERNET | LinkType::LINUX_SLL | LinkType::LINUX_SLL2
        );
        if arp && arp_link {
            v.extend_from_slice(&[
                0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0xaa, 0x01, 192, 0, 2, 1,
            ]);
            v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, target]);
            if link == LinkType::ETHERNET {
                // Padding to the 60-byte Ethernet minimum.
                v.extend_from_slice(&[0; 18]);
            }
            Ok((0x0806, [0xff; 6], [0x02, 0, 0, 0, 0xaa, 0x01], v))
        } else {
            let ip = Ipv4Header::new(0, 64, IpNumber::UDP, [192, 0, 2, 10], [198, 51, 100, 1])
                .map_err(io_err)?;
            PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
                .udp(sport, 123)
                .write(&mut v, &payload)
                .map_err(io_err)?;
            Ok((
                0x0800,
                [0x02, 0xff, 0, 0, 0, 1],
                [0x02, 0, 0, 0, 0xaa, 0x02],
                v,
            ))
        }
    }

    /// Writes exactly `cfg.packets` frames.
    pub fn run(&mut self, cfg: &TraceConfig, w: &mut dyn FrameWriter) -> io::Result<TraceSummary> {
        let mut sum = TraceSummary {
            flows: self.flows.len() as u64,
            ..Default::default()
        };
        let mut ts = Duration::from_secs(EPOCH_SECS);
        let mut frame = Vec::with_capacity(2048);
        while sum.frames < cfg.packets as u64 {
            if self.rng.random_range(0..100u32) < 3 {
                let (ty, dst, src, v) = self.noise(cfg.link)?;
                frame.clear();
                wrap(&mut frame, cfg.link, Vlan::None, src, dst, true, ty, &v);
                ts += Duration::from_nanos(self.rng.random_range(10_000..2_000_000u64));
                w.write_packet(ts, frame.len() as u32, &frame)?;
                sum.frames += 1;
                continue;
            }
            let i = self.pick();
            let pkts = self.next_packets(i)?;
            let f = &self.flows[i];
            for p in pkts {
                if sum.frames >= cfg.packets as u64 {
                    break;
                }
                frame.clear();
                let (src, dst) = if p.from_client {
                    (f.mac_c, f.mac_s)
                } else {
                    (f.mac_s, f.mac_c)
                };
                wrap(
                    &mut frame,
                    cfg.link,
                    f.vlan,
                    src,
                    dst,
                    p.from_client,
                    0x86dd,
                    &p.ip,
                );
                ts += Duration::from_nanos(self.rng.random_range(10_000..2_000_000u64));
                w.write_packet(ts, frame.len() as u32, &frame)?;
                sum.frames += 1;
                sum.ipv6 += 1;
            }
        }
        w.flush()?;
        Ok(sum)
    }
}

/// Puts the link header of `link` in front of `payload`. VLAN tags go after the addresses on
/// Ethernet, and after the header on Linux cooked captures, with the header's protocol field
/// as the first tag's type (as libpcap writes a tag the kernel stripped).
#[allow(clippy::too_many_arguments)]
fn wrap(
    frame: &mut Vec<u8>,
    link: LinkType,
    vlan: Vlan,
    src: [u8; 6],
    dst: [u8; 6],
    outgoing: bool,
    ethertype: u16,
    payload: &[u8],
) {
    // The tags as (type, TCI) pairs, outermost first, then the payload's type.
    let tags: &[(u16, u16)] = match vlan {
        Vlan::None => &[],
        Vlan::Single(id) => &[(0x8100, id)],
        Vlan::Double(o, i) => &[(0x88a8, o), (0x8100, i)],
    };
    let first_ty = tags.first().map_or(ethertype, |t| t.0).to_be_bytes();
    // After the cooked header: TCI, then the next type, per tag.
    let cooked_tags = |frame: &mut Vec<u8>| {
        for (k, &(_, tci)) in tags.iter().enumerate() {
            let next = tags.get(k + 1).map_or(ethertype, |t| t.0);
            frame.extend_from_slice(&tci.to_be_bytes());
            frame.extend_from_slice(&next.to_be_bytes());
        }
    };
    match link {
        LinkType::LINUX_SLL => {
            // Packet type (0 to us, 4 outgoing), ARPHRD_ETHER, address length, address (8).
            frame.extend_from_slice(&[0, if outgoing { 4 } else { 0 }, 0, 1, 0, 6]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&[0, 0]);
            frame.extend_from_slice(&first_ty);
            cooked_tags(frame);
        }
        LinkType::LINUX_SLL2 => {
            // Protocol, reserved, interface index 2, ARPHRD_ETHER, packet type, address length, address.
            frame.extend_from_slice(&first_ty);
            frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, if outgoing { 4 } else { 0 }, 6]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&[0, 0]);
            cooked_tags(frame);
        }
        LinkType::NULL => {
            // Address family in the writer's (little-endian) byte order: AF_INET6 as on BSD.
            let fam: u32 = if ethertype == 0x86dd { 24 } else { 2 };
            frame.extend_from_slice(&fam.to_le_bytes());
        }
        LinkType::RAW => {}
        _ => {
            frame.extend_from_slice(&dst);
            frame.extend_from_slice(&src);
            for &(tpid, tci) in tags {
                frame.extend_from_slice(&tpid.to_be_bytes());
                frame.extend_from_slice(&tci.to_be_bytes());
            }
            frame.extend_from_slice(&ethertype.to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
}

/// Generates a trace into `w` (whose link type must be `cfg.link`).
pub fn generate(cfg: &TraceConfig, w: &mut dyn FrameWriter) -> io::Result<TraceSummary> {
    Generator::new(cfg).run(cfg, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Decoded, Unavailable, decode};
    use crate::source::pcap::{CaptureReader, PcapWriter};

    fn gen_bytes(cfg: &TraceConfig) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), cfg.link).unwrap();
        let s = generate(cfg, &mut w).unwrap();
        assert_eq!(s.frames, cfg.packets as u64);
        w.into_inner().unwrap()
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let cfg = TraceConfig {
            flows: 10,
            packets: 300,
            seed: 7,
            link: LinkType::ETHERNET,
        };
        assert_eq!(gen_bytes(&cfg), gen_bytes(&cfg));
        assert_ne!(gen_bytes(&cfg), gen_bytes(&TraceConfig { seed: 8, ..cfg }));
    }

    #[test]
    fn covers_every_kind_the_issue_asks_for() {
        let bytes = gen_bytes(&TraceConfig {
            flows: 60,
            packets: 3000,
            seed: 3,
            link: LinkType::ETHERNET,
        });
        let mut r = CaptureReader::new(&bytes[..]).unwrap();
        let (mut v6, mut esp, mut nff, mut first_frag, mut zero, mut media, mut other) =
            (0, 0, 0, 0, 0, 0, 0);
        let mut next_headers = std::collections::BTreeSet::new();
        r.for_each(|f| match decode(f.link, f.data) {
            Decoded::Ipv6(k) => {
                v6 += 1;
                next_headers.insert(k.next_header);
                match k.five {
                    Err(Unavailable::Esp) => esp += 1,
                    Err(Unavailable::NonFirstFragment) => nff += 1,
                    Err(e) => panic!("unexpected {e}"),
                    Ok(t) => {
                        if k.next_header == 44 {
                            first_frag += 1;
                            assert_ne!(t.sport, 0);
                        }
                        if t.proto == 17 && (5004..=5005).contains(&t.dport) {
                            media += 1;
                            assert!((0x10000..=0x1ffff).contains(&k.three.label.value()));
                        }
                    }
                }
                if k.three.label.is_zero() {
                    zero += 1;
                }
            }
            Decoded::NonIpv6(_) => other += 1,
        })
        .unwrap();
        assert_eq!(v6 + other, 3000);
        for n in [0, 6, 17, 43, 44, 50, 58, 60] {
            assert!(
                next_headers.contains(&n),
                "no packet starts with next header {n}"
            );
        }
        assert!(esp > 0 && nff > 0 && first_frag > 0 && zero > 0 && media > 0 && other > 0);
    }

    #[test]
    fn every_link_type_decodes_to_the_same_packets() {
        let keys = |link| {
            let cfg = TraceConfig {
                flows: 20,
                packets: 400,
                seed: 5,
                link,
            };
            let bytes = gen_bytes(&cfg);
            let mut out = Vec::new();
            CaptureReader::new(&bytes[..])
                .unwrap()
                .for_each(|f| {
                    assert_eq!(f.link, link);
                    out.push(match decode(f.link, f.data) {
                        Decoded::Ipv6(k) => Some((k.three, k.five)),
                        Decoded::NonIpv6(_) => None,
                    })
                })
                .unwrap();
            out
        };
        let eth = keys(LinkType::ETHERNET);
        assert!(eth.iter().filter(|k| k.is_some()).count() > 350);
        for link in &LINKS[1..] {
            let other = keys(*link);
            // The same IPv6 packets in the same frames (non-IPv6 noise may differ in kind).
            let v6 = |v: &[Option<_>]| v.iter().flatten().cloned().collect::<Vec<_>>();
            assert_eq!(v6(&other), v6(&eth), "{link}");
        }
    }
}
