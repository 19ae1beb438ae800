//! Copying a redb table into another database's write transaction: how
//! backups copy the catalog, the manifest and the alert store.

use redb::{ReadableTable, TableDefinition};

use crate::error::Result;

/// Copies every row of `def` from `src` into `dst`; a table `src` does not
/// have is left out.
pub(crate) fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(def)?;
    for entry in from.iter()? {
        let (k, v) = entry?;
        to.insert(k.value(), v.value())?;
    }
    Ok(())
}
