//! The simulated world: where peers live, how far apart they are, what they can upload.
//!
//! Peers are placed in a coarse table of regions weighted by their online population,
//! scattered around each region's centre. The round-trip time between two peers is the
//! great-circle distance at 2/3 of the speed of light along a route 1.5 times longer than
//! the great circle, plus each peer's access delay (both ways). Upload capacity is drawn
//! from a mix: many viewers that can feed 2-4 children, some watch-only ones, and a few
//! dedicated relays with 20-100 slots.

/// A small deterministic RNG (xoshiro256**, seeded by SplitMix64): the simulator's only
/// source of randomness, so a seed fixes every result.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A child generator (independent stream for one purpose).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// One region: name, centre (degrees) and weight (millions of people online, roughly).
pub struct Region {
    /// Display name.
    pub name: &'static str,
    /// Latitude of the centre.
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// Relative share of the audience.
    pub weight: f64,
}

const fn r(name: &'static str, lat: f64, lon: f64, weight: f64) -> Region {
    Region {
        name,
        lat,
        lon,
        weight,
    }
}

/// The world, coarsely: where internet users live.
pub const REGIONS: &[Region] = &[
    r("China East", 31.2, 121.5, 600.0),
    r("China North", 39.9, 116.4, 350.0),
    r("India North", 28.6, 77.2, 400.0),
    r("India South", 13.0, 77.6, 350.0),
    r("Japan", 35.7, 139.7, 115.0),
    r("Korea", 37.6, 127.0, 50.0),
    r("Southeast Asia", 1.35, 103.8, 250.0),
    r("Indonesia", -6.2, 106.8, 200.0),
    r("Europe West", 50.1, 8.7, 300.0),
    r("Europe East", 52.2, 21.0, 150.0),
    r("UK and Ireland", 51.5, -0.1, 70.0),
    r("Russia", 55.8, 37.6, 120.0),
    r("Middle East", 25.2, 55.3, 150.0),
    r("Africa West", 6.5, 3.4, 200.0),
    r("Africa East", -1.3, 36.8, 150.0),
    r("Africa South", -26.2, 28.0, 60.0),
    r("US East", 38.9, -77.0, 170.0),
    r("US Central", 41.9, -87.6, 100.0),
    r("US West", 37.4, -122.1, 120.0),
    r("Mexico", 19.4, -99.1, 100.0),
    r("Brazil", -23.5, -46.6, 180.0),
    r("Argentina", -34.6, -58.4, 50.0),
    r("Australia", -33.9, 151.2, 30.0),
];

/// The origin's region (index into [`REGIONS`]).
pub const ORIGIN_REGION: usize = 16;

/// A peer's place in the network.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// Unit vector of its position on the globe.
    pub xyz: [f64; 3],
    /// One-way access delay (last mile), microseconds.
    pub access_us: u32,
    /// Index into [`REGIONS`].
    pub region: u8,
}

const EARTH_KM: f64 = 6371.0;
/// Light in fibre: 200 km per millisecond.
const FIBRE_KM_PER_US: f64 = 0.2;
/// Routes are longer than great circles.
const ROUTE_FACTOR: f64 = 1.5;

impl Place {
    pub(crate) fn at(lat: f64, lon: f64, access_us: u32, region: usize) -> Place {
        let (la, lo) = (lat.to_radians(), lon.to_radians());
        Place {
            xyz: [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()],
            access_us,
            region: region as u8,
        }
    }

    /// Base one-way delay to `other` in microseconds (no jitter).
    pub fn owd_us(&self, other: &Place) -> u64 {
        let d =
            self.xyz[0] * other.xyz[0] + self.xyz[1] * other.xyz[1] + self.xyz[2] * other.xyz[2];
        let km = EARTH_KM * d.clamp(-1.0, 1.0).acos();
        let prop = km * ROUTE_FACTOR / FIBRE_KM_PER_US;
        prop as u64 + u64::from(self.access_us) + u64::from(other.access_us)
    }
}

/// Draws peer positions: a region by weight, then a spot around its centre and an access
/// delay (log-normal, median 5 ms one way, 1-40 ms).
pub struct Placer {
    cumulative: Vec<f64>,
}

impl Default for Placer {
    fn default() -> Self {
        let mut acc = 0.0;
        let cumulative = REGIONS
            .iter()
            .map(|r| {
                acc += r.weight;
                acc
            })
            .collect();
        Placer { cumulative }
    }
}

impl Placer {
    /// A random peer's place.
    pub fn place(&self, rng: &mut Rng) -> Place {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        let region = self
            .cumulative
            .iter()
            .position(|c| x < *c)
            .unwrap_or(REGIONS.len() - 1);
        let reg = &REGIONS[region];
        let lat = (reg.lat + 3.0 * rng.normal()).clamp(-89.0, 89.0);
        let lon = reg.lon + 4.0 * rng.normal();
        Place::at(lat, lon, access_delay(rng), region)
    }

    /// The origin: a data centre in [`ORIGIN_REGION`] (1 ms access).
    pub fn origin(&self) -> Place {
        let reg = &REGIONS[ORIGIN_REGION];
        Place::at(reg.lat, reg.lon, 1000, ORIGIN_REGION)
    }
}

fn access_delay(rng: &mut Rng) -> u32 {
    let ms = (5.0 * (0.6 * rng.normal()).exp()).clamp(1.0, 40.0);
    (ms * 1000.0) as u32
}

/// What a peer can forward: its child slots and its upload rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uplink {
    /// Children the overlay accepts.
    pub capacity: u32,
    /// Upload rate, bits per second.
    pub upload_bps: f64,
}

/// Draws a peer's uplink for a stream of `stream_bps`: 0.2% dedicated relays (20-100
/// slots), 15% watch-only, 45% with 2 slots, 25% with 3, the rest with 4. A slot is
/// backed by 1.1-1.6 times the stream rate of upload.
pub fn uplink(rng: &mut Rng, stream_bps: f64) -> Uplink {
    let x = rng.unit();
    let capacity = if x < 0.002 {
        20 + rng.below(81) as u32
    } else if x < 0.152 {
        0
    } else if x < 0.602 {
        2
    } else if x < 0.852 {
        3
    } else {
        4
    };
    let headroom = if capacity == 0 {
        0.6
    } else {
        rng.range(1.1, 1.6)
    };
    Uplink {
        capacity,
        upload_bps: f64::from(capacity.max(1)) * stream_bps * headroom,
    }
}
