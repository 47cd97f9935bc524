//! What a task costs its assignee and pays its completer, drawn once.

use rand::Rng;

/// The two prices of a task, drawn once when accounting first hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Debited from the assignee at every assignment: 10..=20.
    pub assign_fee: i64,
    /// Credited to the completer: 20..=40.
    pub reward: i64,
}

impl Prices {
    pub const FEE: std::ops::RangeInclusive<i64> = 10..=20;
    pub const REWARD: std::ops::RangeInclusive<i64> = 20..=40;

    pub fn draw(rng: &mut impl Rng) -> Self {
        Self {
            assign_fee: rng.random_range(Self::FEE),
            reward: rng.random_range(Self::REWARD),
        }
    }
}
