"""Workarounds for Faust and what runs under it (aiokafka, aiohttp, the noida-db broker).

Each module works around one behaviour of a pinned dependency, says which upstream issue
it is (where one is known) and the version it was checked against; drop a module when its
upstream is fixed. They import the standard library, the dependency they patch and
``schemas`` only; the stage shells (``streams.stages``) and the CLI install or use them.

=====================  =====================================================  ====================
module                 works around                                           checked against
=====================  =====================================================  ====================
``patches``            Faust's four tasks per fetched record; its changelog   faust-streaming
                       recovery one task per record (speed, no bug filed)     0.15.3, mode 0.7.1
``aiokafka_patches``   empty fetches back to back on a broker that does not   aiokafka 0.14.0,
                       long-poll; a member dropped on a stale commit          noida-db 0.2.3
``inorder``            records dropped before they reach the agent, commits   faust-streaming
                       stepping over them (faust-streaming #596, #606)        0.15.3
``seenorder``          the same for the send stage's concurrent actors        faust-streaming
                       (#596, #606)                                           0.15.3
``recovery_guard``     table recovery waiting for good for records dropped    faust-streaming
                       (#596) or lost by the broker                           0.15.3, noida-db 0.2.3
``batches``            ``take_events`` holding a record in a busy actor       faust-streaming 0.15.3
``httpguard``          aiohttp's hour-long idle connections, unbounded reads  aiohttp 3.14 (Faust's
                                                                              web driver)
``lost_tail``          the embedded broker losing its last second when        noida-db 0.2.3
                       killed (it snapshots about once a second)
``send_guard``         a reply's ``attempting`` mark lost with that second    noida-db 0.2.3,
                       or in a rebalance                                      faust-streaming 0.15.3
=====================  =====================================================  ====================
"""
