// The configuration files of the local node's daemons, as text: containerd, the CNI bridge,
// the kubelet, CoreDNS; and the kube-dns Service in front of CoreDNS. Pure: paths in, text out.
import type { KubernetesObject } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { CNI_BIN_DIR, NODE_NETWORK } from './node-host.ts';

export interface NodePaths {
  readonly runDir: string;
  readonly containerdSocket: string;
  readonly cniConfDir: string;
  readonly kubeconfig: string;
  readonly caCert: string;
  readonly kubeletCert: string;
  readonly kubeletKey: string;
}

/** containerd 1.6 (Debian 12): all state under the run directory, runc with cgroupfs. */
export function containerdConfig(p: NodePaths, pauseImage: string, runc: string): string {
  const dir = `${p.runDir}/containerd`;
  return `version = 2
root = "${dir}/root"
state = "${dir}/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${p.containerdSocket}"

[ttrpc]
  address = "${p.containerdSocket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${dir}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${pauseImage}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # CI containers lack CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (-998 for sandboxes)
  restrict_oom_score_adj = true
  # Pods' network namespaces live in the run directory, so a killed run's are found and removed
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${runc}"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${p.cniConfDir}"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
`;
}

/** The Pod network: one bridge, addresses from host-local, a route only to Services. */
export function cniConfig(p: NodePaths): string {
  const n = NODE_NETWORK;
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: 'eventwire-node',
      plugins: [
        {
          type: 'bridge',
          bridge: n.bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: n.podCidr, gateway: n.address }]],
            // no default route: a Pod reaches other Pods, Services and this host, nothing else
            routes: [{ dst: n.serviceCidr }],
            dataDir: `${p.runDir}/cni/ipam`,
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

/** The kubelet on a host without systemd, cgroup v1 or v2, serving on the bridge address. */
export function kubeletConfig(p: NodePaths, healthzPort: number): string {
  const n = NODE_NETWORK;
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: n.address,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort,
    tlsCertFile: p.kubeletCert,
    tlsPrivateKeyFile: p.kubeletKey,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: p.caCert },
    },
    authorization: { mode: 'AlwaysAllow' },
    containerRuntimeEndpoint: `unix://${p.containerdSocket}`,
    cgroupDriver: 'cgroupfs',
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    // the kubelet refuses cgroup v1 hosts by default since v1.35; CI containers are often v1
    failCgroupV1: false,
    podLogsDir: `${p.runDir}/pod-logs`,
    clusterDomain: 'cluster.local',
    clusterDNS: [n.dnsServiceIp],
    // Pods do not inherit the host's resolvers: names outside the cluster do not resolve
    resolvConf: '',
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'imagefs.available': '1%',
    },
    imageGCHighThresholdPercent: 100,
    serializeImagePulls: false,
  });
}

/** CoreDNS answers cluster.local from the API server and nothing else (no forwarding). */
export function corefile(p: NodePaths, healthPort: number): string {
  return `.:53 {
    bind ${NODE_NETWORK.address}
    errors
    health 127.0.0.1:${healthPort}
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${p.kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
`;
}

/** Service kube-dns at the kubelet's clusterDNS address, backed by CoreDNS on the host. */
export function kubeDnsManifests(): (KubernetesObject & Record<string, unknown>)[] {
  const ports = [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ];
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns' } },
      spec: {
        clusterIP: NODE_NETWORK.dnsServiceIp,
        ports: ports.map((x) => ({ ...x, targetPort: 53 })),
      },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'kube-dns-host',
        namespace: 'kube-system',
        labels: {
          'kubernetes.io/service-name': 'kube-dns',
          'endpointslice.kubernetes.io/managed-by': 'eventwire-dev',
        },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: [NODE_NETWORK.address], conditions: { ready: true } }],
      ports,
    },
  ];
}
