//! sea-orm entities, one module per table (see `migrations/`).

macro_rules! entity_boilerplate {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod tenant {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub cloud_credentials: String,
        pub cloud_tags: String,
        pub created_at: i64,
    }
    entity_boilerplate!();
}

pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub secret_hash: String,
        pub label: Option<String>,
        pub created_at: i64,
        /// The user the key acts as (every key has one once FM has started).
        pub user_id: Option<String>,
        /// The key's own role, at most the user's; none: the user's.
        pub role: Option<String>,
        pub expires_at: Option<i64>,
        pub last_used_at: Option<i64>,
    }
    entity_boilerplate!();
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub role: String,
        /// argon2id in PHC form; none until a password is set.
        pub password_hash: Option<String>,
        pub must_change_password: bool,
        pub disabled: bool,
        pub created_at: i64,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// SHA-256 (hex) of the cookie's token.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub user_id: String,
        pub created_at: i64,
        pub last_seen_at: i64,
        /// The absolute end; the idle end is `last_seen_at` plus the idle
        /// timeout.
        pub expires_at: i64,
        pub source: Option<String>,
    }
    entity_boilerplate!();
}

pub mod audit {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub at: i64,
        pub tenant_id: Option<String>,
        pub actor: Option<String>,
        pub key_id: Option<String>,
        pub role: Option<String>,
        pub source: Option<String>,
        pub method: String,
        pub path: String,
        pub object: Option<String>,
        /// `started`, then `ok`, `failed` or `refused`.
        pub outcome: String,
        pub status: Option<i32>,
        pub error: Option<String>,
        pub duration_ms: Option<i64>,
        pub operation_id: Option<String>,
        pub request_id: String,
    }
    entity_boilerplate!();
}

pub mod image {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "images")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub label: String,
        pub node_version: String,
        pub sort_key: i64,
        pub created_at: i64,
        pub kit_file: Option<String>,
        pub kit_sha256: Option<String>,
    }
    entity_boilerplate!();
}

pub mod cloud_account {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "cloud_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub label: String,
        pub doc: String,
        pub secret: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod virtual_network {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "virtual_networks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub account_id: Option<String>,
        pub label: String,
        pub doc: String,
        pub created_at: i64,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod instance_template {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "instance_templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub label: String,
        pub doc: String,
        pub secret: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod instance {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub label: String,
        pub template_id: String,
        pub network_id: String,
        pub image_id: String,
        pub doc: String,
        pub generation: i64,
        pub created_at: i64,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod operation {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "operations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub kind: String,
        pub target_id: String,
        pub state: String,
        pub params: String,
        pub saga: String,
        pub next_step: i32,
        pub total_steps: i32,
        pub current_step: Option<String>,
        pub result: Option<String>,
        pub error_type: Option<String>,
        pub error_message: Option<String>,
        pub abort_requested: bool,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<i64>,
        pub attempts: i32,
        pub created_at: i64,
        pub started_at: Option<i64>,
        pub finished_at: Option<i64>,
        pub updated_at: i64,
        /// Who started it: a user's name, or `system:<reconciler>`.
        pub initiated_by: Option<String>,
    }
    entity_boilerplate!();
}

pub mod operation_log {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "operation_logs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub operation_id: String,
        pub at: i64,
        pub line: String,
    }
    entity_boilerplate!();
}

pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub operation_id: Option<String>,
        pub kind: String,
        pub target_id: String,
        pub at: i64,
        pub detail: String,
    }
    entity_boilerplate!();
}

pub mod setting {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod enrollment_token {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "enrollment_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub instance_id: String,
        pub vm_id: String,
        pub expires_at: i64,
        pub used_at: Option<i64>,
        pub created_at: i64,
        pub public_key_sha256: Option<String>,
    }
    entity_boilerplate!();
}

pub mod instance_runtime {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "instance_runtimes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: String,
        pub tenant_id: String,
        pub state: String,
        pub vm_id: Option<String>,
        pub volume_id: Option<String>,
        pub port: Option<i32>,
        pub public_url: Option<String>,
        pub node_version: Option<String>,
        pub initial_password: Option<String>,
        pub initial_password_taken: bool,
        pub admin_api_key: Option<String>,
        pub agent_generation: i64,
        pub agent_version: Option<String>,
        pub node_state: Option<String>,
        pub last_heartbeat_at: Option<i64>,
        pub heartbeat: Option<String>,
        pub updated_at: i64,
    }
    entity_boilerplate!();
}

pub mod snapshot {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "snapshots")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub instance_id: String,
        pub cloud_ref: String,
        pub reason: Option<String>,
        pub node_version: Option<String>,
        pub size_bytes: Option<i64>,
        pub created_at: i64,
        pub automated: bool,
    }
    entity_boilerplate!();
}

pub mod backup {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "backups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub instance_id: String,
        pub location_url: String,
        pub node_version: String,
        pub created_at: i64,
        pub archive_bytes: i64,
        pub data_bytes: i64,
        pub files: i64,
        pub manifest_sha256: String,
        pub encrypted: bool,
        pub automated: bool,
        pub reason: Option<String>,
        pub verified_at: Option<i64>,
        pub verify_ok: Option<bool>,
        pub verify_message: Option<String>,
    }
    entity_boilerplate!();
}

pub mod rollout {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "rollouts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub label: String,
        /// What was asked, as the public document's JSON.
        pub spec: String,
        pub state: String,
        /// Why it stopped, when it did not finish every target.
        pub reason: Option<String>,
        pub initiated_by: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
        pub finished_at: Option<i64>,
    }
    entity_boilerplate!();
}

pub mod rollout_target {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "rollout_targets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub rollout_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i32,
        pub instance_id: String,
        pub canary: bool,
        pub state: String,
        /// The operation FM started (or is about to start) for it.
        pub operation_id: Option<String>,
        pub error: Option<String>,
        pub started_at: Option<i64>,
        /// When its operation finished and the health watch began.
        pub watch_since: Option<i64>,
        /// Since when the node has been healthy without a break.
        pub healthy_since: Option<i64>,
        pub finished_at: Option<i64>,
    }
    entity_boilerplate!();
}

pub mod request_id {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize,
    )]
    #[sea_orm(table_name = "request_ids")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        /// The client's id for the request (AIP-155).
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// The method it was given to (`VirtualNetworks/CreateVirtualNetwork`).
        pub method: String,
        /// A hash of the request, so the id reused for another is refused.
        pub fingerprint: String,
        /// The object the request made.
        pub object_id: String,
        pub created_at: i64,
    }
    entity_boilerplate!();
}
