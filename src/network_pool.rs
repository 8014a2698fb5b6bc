//! The daemon's own address pool for workspace networks. Docker's default pools hold about 30
//! bridge networks; a daemon that serves hundreds of workspaces hands out subnets itself
//! (`--network-pool`, split into `/--network-prefix` subnets) and keeps each on its row.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub len: u8,
}

impl Cidr {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    pub fn first(&self) -> u32 {
        self.addr & Self::mask(self.len)
    }

    pub fn last(&self) -> u32 {
        self.first() | !Self::mask(self.len)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, len) = text.trim().split_once('/').ok_or_else(|| format!("`{text}` is not a CIDR (a.b.c.d/len)"))?;
        let addr = Ipv4Addr::from_str(addr).map_err(|e| format!("`{text}`: {e}"))?;
        let len: u8 = len.parse().map_err(|_| format!("`{text}`: bad prefix length"))?;
        if len > 32 {
            return Err(format!("`{text}`: prefix length above 32"));
        }
        Ok(Cidr { addr: u32::from(addr), len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.first()), self.len)
    }
}

/// `range` cut into subnets of prefix length `prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub range: Cidr,
    pub prefix: u8,
}

impl Pool {
    pub fn new(range: &str, prefix: u8) -> Result<Self, String> {
        let range: Cidr = range.parse()?;
        if !(range.len..=29).contains(&prefix) {
            return Err(format!("subnets of /{prefix} do not fit in {range} (the prefix must be between {} and 29)", range.len));
        }
        Ok(Pool { range, prefix })
    }

    /// How many subnets the pool holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.prefix - self.range.len)
    }

    /// The first subnet that overlaps none of `used` (unparseable or IPv6 entries are ignored).
    pub fn first_free(&self, used: &[String]) -> Option<String> {
        let used: Vec<Cidr> = used.iter().filter_map(|u| u.parse().ok()).collect();
        let step = 1u64 << (32 - u32::from(self.prefix));
        (0..self.capacity())
            .map(|i| Cidr { addr: (u64::from(self.range.first()) + i * step) as u32, len: self.prefix })
            .find(|candidate| !used.iter().any(|u| u.overlaps(candidate)))
            .map(|c| c.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_subnets_in_order_around_used_ones() {
        let pool = Pool::new("10.200.0.0/22", 24).unwrap();
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.first_free(&[]).as_deref(), Some("10.200.0.0/24"));
        let used = vec!["10.200.0.0/24".to_string(), "fd00::/64".into(), "10.200.1.128/25".into()];
        assert_eq!(pool.first_free(&used).as_deref(), Some("10.200.2.0/24"));
        // A wide network elsewhere that covers the whole pool leaves nothing.
        assert_eq!(pool.first_free(&["10.0.0.0/8".into()]), None);
        let all: Vec<String> = (0..4).map(|i| format!("10.200.{i}.0/24")).collect();
        assert_eq!(pool.first_free(&all), None);
    }

    #[test]
    fn bad_pools_are_refused() {
        assert!(Pool::new("10.200.0.0/16", 8).is_err());
        assert!(Pool::new("10.200.0.0/16", 31).is_err());
        assert!(Pool::new("10.200.0.0", 24).is_err());
        assert!(Pool::new("300.1.1.1/16", 24).is_err());
        assert_eq!(Pool::new("10.200.7.9/16", 24).unwrap().first_free(&[]).as_deref(), Some("10.200.0.0/24"));
    }
}
