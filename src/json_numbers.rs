//! Whole numbers in request bodies: JSON Schema counts `3.0` as an integer, and so do clients that
//! only have doubles; serde's integer types refuse it. These accept an integral number in range.

use serde::de::Error;
use serde::{Deserialize, Deserializer};

fn whole<E: Error>(n: &serde_json::Number) -> Result<u64, E> {
    match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Ok(u),
        (None, Some(f)) if f.fract() == 0.0 && (0.0..=9.007_199_254_740_992e15).contains(&f) => Ok(f as u64),
        _ => Err(E::custom(format!("`{n}` is not a whole number in range"))),
    }
}

pub fn usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    usize::try_from(whole::<D::Error>(&n)?).map_err(|_| D::Error::custom(format!("`{n}` is too large")))
}

pub fn option_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.map(|n| whole::<D::Error>(&n)).transpose()
}

pub fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match option_u64(d)? {
        None => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| D::Error::custom(format!("`{v}` is too large"))),
    }
}
