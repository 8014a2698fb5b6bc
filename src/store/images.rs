//! The `image_uses` table: when the daemon last used an image, for the build cache's LRU order.

use std::collections::HashMap;

use super::{Store, StoreError};

impl Store {
    /// Records that `image_id` was used now.
    pub async fn touch_image(&self, image_id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO image_uses (image_id, used_at) VALUES (?, CAST(strftime('%s', 'now') AS INTEGER)) \
             ON CONFLICT (image_id) DO UPDATE SET used_at = excluded.used_at",
        )
        .bind(image_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Last use (unix seconds) per image id.
    pub async fn image_uses(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT image_id, used_at FROM image_uses").fetch_all(self.pool()).await?;
        Ok(rows.into_iter().collect())
    }

    /// Forget images that are gone.
    pub async fn forget_images(&self, ids: &[String]) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("DELETE FROM image_uses WHERE image_id = ?").bind(id).execute(self.pool()).await?;
        }
        Ok(())
    }
}
