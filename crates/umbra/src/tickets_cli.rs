//! `umbra client buy`: bandwidth tickets into a client daemon's wallet.

use std::path::Path;

use anyhow::Context;
use umbra_client_daemons::tickets::{self, BuyError};
use umbra_ledger::api::TicketStatsView;
use umbra_ledger::{Amount, SigningKey};
use umbra_net::keys::read_key;
use umbra_net::ledger::LedgerClient;

pub(crate) fn buy(data_dir: &Path, key_file: &Path, count: u32) -> anyhow::Result<()> {
    let account = SigningKey::from_seed(read_key(key_file).with_context(|| {
        format!(
            "--account {}: the key file of the account that pays (`umbra account new --out FILE` makes one)",
            key_file.display()
        )
    })?);
    let (validators, chain_id) = tickets::ledger_of(data_dir)?;
    let wallet = tickets::wallet_of(data_dir)?;
    crate::runtime()?.block_on(async {
        let resumed = wallet.resume(&validators, &chain_id).await?;
        for done in &resumed {
            println!(
                "Finished a purchase a crash had left unfinished: {} tickets of key period {} (transaction {}).",
                done.count, done.period, done.tx
            );
        }
        // the price before buying: what this purchase pays
        let mut price = None;
        for url in &validators {
            if let Ok(address) = url.resolve().await
                && let Ok(stats) = LedgerClient::new(address)
                    .get::<TicketStatsView>("/tickets")
                    .await
            {
                price = Some(stats.price);
                break;
            }
        }
        let bought = wallet
            .buy(&validators, &chain_id, &account, count)
            .await
            .map_err(|error| match error {
                BuyError::Refused { .. } => anyhow::anyhow!(
                    "{error}\n(signed by account {} with the key in {})",
                    account.public(),
                    key_file.display()
                ),
                other => other.into(),
            })?;
        let paid = match price {
            Some(price) => format!(
                " for {} ({} × {price})",
                Amount(price.0.saturating_mul(u64::from(bought.count))),
                bought.count
            ),
            None => String::new(),
        };
        println!(
            "Bought {} tickets of key period {}{paid}, transaction {}.",
            bought.count, bought.period, bought.tx
        );
        let counts = wallet.counts()?;
        println!(
            "The wallet ({}) holds {} unspent tickets.",
            data_dir.join(umbra_client_daemons::daemon::TICKETS_FILE).display(),
            counts.unspent
        );
        Ok(())
    })
}
