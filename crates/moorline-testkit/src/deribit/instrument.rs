//! The instruments the simulator lists, and conversions between Deribit's
//! decimal prices/amounts and the integer ticks/units the book works in.

/// Static description of one listed instrument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InstrumentSpec {
    /// `BTC-PERPETUAL`.
    pub(crate) name: &'static str,
    /// `BTC`.
    pub(crate) currency: &'static str,
    /// Ticks per 1 USD of price (`2` for a tick size of 0.5).
    pub(crate) ticks_per_unit: u32,
    /// Contract size in USD; amounts must be multiples of it.
    pub(crate) contract_size: u64,
    /// Price the simulated market starts around, in USD.
    pub(crate) start_price: f64,
    /// Deribit's numeric instrument id.
    pub(crate) instrument_id: u64,
    /// When a dated future expires (ms since the epoch, 08:00 UTC on the last Friday of
    /// its month); `None` for a perpetual.
    pub(crate) expiration_ms: Option<u64>,
}

impl InstrumentSpec {
    /// Tick size in USD.
    pub(crate) fn tick_size(&self) -> f64 {
        1.0 / f64::from(self.ticks_per_unit)
    }

    /// Ticks as a price in USD (the division is correctly rounded, so
    /// `3000.05` prints as such).
    pub(crate) fn price(&self, ticks: i64) -> f64 {
        ticks as f64 / f64::from(self.ticks_per_unit)
    }

    /// A price in USD as ticks, if it is positive, finite, sane and a multiple of the tick size.
    pub(crate) fn ticks(&self, price: f64) -> Result<i64, String> {
        if !price.is_finite() || price <= 0.0 {
            return Err("must be a positive number".to_owned());
        }
        let scaled = price * f64::from(self.ticks_per_unit);
        if scaled > 1e12 {
            return Err("too high".to_owned());
        }
        let rounded = scaled.round();
        if (scaled - rounded).abs() > 1e-6 {
            return Err(format!("must be a multiple of the tick size {}", self.tick_size()));
        }
        Ok(rounded as i64)
    }

    /// An amount in USD as whole USD, if positive, sane and a multiple of the contract size.
    pub(crate) fn units(&self, amount: f64) -> Result<u64, String> {
        if !amount.is_finite() || amount <= 0.0 {
            return Err("must be a positive number".to_owned());
        }
        if amount > 1e12 {
            return Err("too high".to_owned());
        }
        let rounded = amount.round();
        if (amount - rounded).abs() > 1e-9 || !(rounded as u64).is_multiple_of(self.contract_size) {
            return Err(format!("must be a multiple of contract size {}", self.contract_size));
        }
        Ok(rounded as u64)
    }
}

/// Every listed instrument, in a fixed order (the market is stepped in this order): the two
/// perpetuals and BTC's December 2026 future (tick 0.5, contract 10 USD, as Deribit lists
/// its BTC futures), so that the simulator serves more than 200 distinct channels.
pub(crate) const INSTRUMENTS: [InstrumentSpec; 3] = [
    InstrumentSpec {
        name: "BTC-PERPETUAL",
        currency: "BTC",
        ticks_per_unit: 2,
        contract_size: 10,
        start_price: 60_000.0,
        instrument_id: 124_972,
        expiration_ms: None,
    },
    InstrumentSpec {
        name: "ETH-PERPETUAL",
        currency: "ETH",
        ticks_per_unit: 20,
        contract_size: 1,
        start_price: 3_000.0,
        instrument_id: 124_973,
        expiration_ms: None,
    },
    InstrumentSpec {
        name: "BTC-25DEC26",
        currency: "BTC",
        ticks_per_unit: 2,
        contract_size: 10,
        start_price: 60_400.0,
        instrument_id: 398_521,
        expiration_ms: Some(1_798_185_600_000),
    },
];

/// The price indices of the listed instruments (`btc_usd`, `eth_usd`), each once, in order.
pub(crate) fn price_indices() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for spec in INSTRUMENTS {
        let index = format!("{}_usd", spec.currency.to_lowercase());
        if !out.contains(&index) {
            out.push(index);
        }
    }
    out
}

/// Index of the instrument called `name` in [`INSTRUMENTS`].
pub(crate) fn index_of(name: &str) -> Option<usize> {
    INSTRUMENTS.iter().position(|i| i.name == name)
}

#[cfg(test)]
mod tests {
    use super::{INSTRUMENTS, index_of};

    #[test]
    fn prices_and_amounts() {
        let (btc, eth) = (INSTRUMENTS[0], INSTRUMENTS[1]);
        assert_eq!(btc.ticks(60_000.5), Ok(120_001));
        assert!(btc.ticks(60_000.25).is_err());
        assert_eq!(eth.ticks(3000.05), Ok(60_001));
        assert_eq!(eth.price(60_001).to_string(), "3000.05");
        assert!(eth.ticks(-1.0).is_err() && eth.ticks(f64::NAN).is_err() && eth.ticks(1e300).is_err());
        assert_eq!(btc.units(30.0), Ok(30));
        assert!(btc.units(15.0).is_err() && btc.units(0.0).is_err() && btc.units(10.5).is_err());
        assert_eq!(eth.units(7.0), Ok(7));
        assert_eq!(index_of("ETH-PERPETUAL"), Some(1));
        assert_eq!(index_of("DOGE-PERPETUAL"), None);
        assert_eq!(index_of("BTC-25DEC26"), Some(2));
    }
}
