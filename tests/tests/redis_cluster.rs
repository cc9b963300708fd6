//! rt nodes on a real Redis Cluster (3 masters, 3 replicas, started here): the multi-node
//! scenarios every distributed backplane passes, channels spread over every shard, a master
//! killed and its replica promoted, and a wrong cluster URL.

mod cluster;

use rt_tests::RedisCluster;

#[test]
fn the_harness_starts_a_cluster_of_three_masters() {
    let c = RedisCluster::start();
    assert_eq!(c.masters().len(), 3);
    let p = c.master_of("{a}x");
    assert!(c.ports().contains(&p));
}
