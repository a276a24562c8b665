//! AddPermission and RemovePermission: statements kept in the queue's `Policy` attribute.

use super::*;

impl Queues {
    /// `AddPermission`: a statement in the queue's policy.
    pub async fn add_permission(
        &self,
        name: &str,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<()> {
        if label.is_empty() || accounts.is_empty() || actions.is_empty() {
            return Err(QueueError::MissingParameter(
                "Label, AWSAccountIds and Actions".into(),
            ));
        }
        let arn = self.arn(name);
        let queue = self.queue(name)?;
        let policy = queue.inner.lock().def.attributes.get("Policy").cloned();
        let mut doc: serde_json::Value = policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_else(|| {
                serde_json::json!({"Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": []})
            });
        let statements = doc
            .get_mut("Statement")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(|| {
                QueueError::InvalidParameterValue("The queue policy has no Statement list.".into())
            })?;
        if statements
            .iter()
            .any(|s| s.get("Sid").and_then(|v| v.as_str()) == Some(label))
        {
            return Err(QueueError::InvalidParameterValue(format!(
                "Value {label} for parameter Label is invalid. Reason: Already exists."
            )));
        }
        let principals: Vec<String> = accounts
            .iter()
            .map(|a| format!("arn:aws:iam::{a}:root"))
            .collect();
        let actions: Vec<String> = actions.iter().map(|a| format!("SQS:{a}")).collect();
        statements.push(serde_json::json!({
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": actions,
            "Resource": arn,
        }));
        let mut attrs = BTreeMap::new();
        attrs.insert("Policy".to_string(), doc.to_string());
        self.set_attributes(name, &attrs).await
    }

    /// `RemovePermission`.
    pub async fn remove_permission(&self, name: &str, label: &str) -> Result<()> {
        let queue = self.queue(name)?;
        let policy = queue.inner.lock().def.attributes.get("Policy").cloned();
        let mut doc: serde_json::Value = policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(serde_json::Value::Null);
        let missing = || {
            QueueError::InvalidParameterValue(format!(
                "Value {label} for parameter Label is invalid. Reason: can't find label on existing policy."
            ))
        };
        let statements = doc
            .get_mut("Statement")
            .and_then(|s| s.as_array_mut())
            .ok_or_else(missing)?;
        let before = statements.len();
        statements.retain(|s| s.get("Sid").and_then(|v| v.as_str()) != Some(label));
        if statements.len() == before {
            return Err(missing());
        }
        let value = if statements.is_empty() {
            String::new()
        } else {
            doc.to_string()
        };
        let mut attrs = BTreeMap::new();
        attrs.insert("Policy".to_string(), value);
        self.set_attributes(name, &attrs).await
    }
}
