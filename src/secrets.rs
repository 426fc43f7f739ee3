//! The extension's own server-side secrets (`auth.secrets`, owner only), each made on first
//! use: the refresh-token chain key, the key of one-time code hashes.

use crate::spi;

/// The secret called `name`, made (32 random bytes) on first use.
pub fn get(name: &str) -> Vec<u8> {
    const READ: &str = "SELECT value FROM auth.secrets WHERE name OPERATOR(pg_catalog.=) $1";
    spi::run(|c| {
        let t = c.update(READ, None, &[name.into()])?;
        if !t.is_empty() {
            return t.first().get_one::<Vec<u8>>();
        }
        // A concurrent first use waits on the conflict; the re-read sees the winner's secret.
        c.update(
            "INSERT INTO auth.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            None,
            &[name.into(), auth_core::random::bytes(32).into()],
        )?;
        c.update(READ, None, &[name.into()])?
            .first()
            .get_one::<Vec<u8>>()
    })
    .expect("the secret was just ensured")
}
