#!/bin/bash
# Fleet Manager: boot script of a node's VM on EC2, run once by cloud-init.
# It mounts the instance's data volume (formatting it only when it holds no
# filesystem yet), writes fm-agent's settings and starts the agent, which
# enrolls with Fleet Manager and installs the node.
set -euo pipefail

VOLUME_ID="{{volume_id}}"
MOUNT="{{mount}}"

# The data volume shows up as an NVMe device named after the volume id on
# Nitro instances, or as /dev/xvdf on older ones.
dev=""
for _ in $(seq 1 300); do
    for d in "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${VOLUME_ID//-/}" /dev/xvdf /dev/sdf; do
        if [ -b "$d" ]; then dev="$d"; break 2; fi
    done
    sleep 1
done
if [ -z "$dev" ]; then
    echo "fleet-manager: data volume $VOLUME_ID never appeared" >&2
    exit 1
fi
if ! blkid "$dev" >/dev/null 2>&1; then
    mkfs.ext4 -q -L fm-data "$dev"
fi
mkdir -p "$MOUNT"
grep -q " $MOUNT " /etc/fstab || echo "LABEL=fm-data $MOUNT ext4 defaults,nofail 0 2" >>/etc/fstab
mountpoint -q "$MOUNT" || mount "$dev" "$MOUNT"

# The node runs as its own user, never as root; the agent (root) drops to
# it for every command of the node's kit.
if ! id -u {{node_user}} >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$MOUNT" --no-create-home --shell /bin/bash {{node_user}}
fi
chown {{node_user}}: "$MOUNT"

install -d -m 0700 /var/lib/fm-agent
umask 077
cat >/var/lib/fm-agent/user-data.toml <<'FM_AGENT_TOML'
{{agent_toml}}
FM_AGENT_TOML

# The image ships fm-agent and its unit; the unit restarts a crashed agent.
systemctl enable --now fm-agent.service
