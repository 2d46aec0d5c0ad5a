# fish completion for vmcsum(8)
set -l commands show audit set probe bench scrub repair record

complete -c vmcsum -f
complete -c vmcsum -l json -f -a 'pretty short' -d 'Print one JSON document on stdout'
complete -c vmcsum -l color -x -a 'auto always never' -d 'Colour the output'
complete -c vmcsum -s v -l verbose -d 'Say more'
complete -c vmcsum -s q -l quiet -d 'Print no warnings'
complete -c vmcsum -s o -l output -x -d 'Table columns to print, in this order'
complete -c vmcsum -l no-headings -d 'Print only the table rows'
complete -c vmcsum -l bytes -d 'Print sizes in tables as byte counts'
complete -c vmcsum -l state-dir -r -d 'Where vmcsum keeps its records'
complete -c vmcsum -l version -d 'Print the version'
complete -c vmcsum -s h -l help -d 'Print help'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a show -d 'Show NOCOW, NODATASUM, checksum type, profile and extents'
complete -c vmcsum -n "__fish_seen_subcommand_from show" -F

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a audit -d 'Find VM images and say which are at risk'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -F
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l libvirt-dir -r -d 'libvirt configuration directory'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l libvirt-run-dir -r -d 'libvirt runtime directory'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l pve-dir -r -d 'Proxmox configuration directory'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l proc -r -d 'proc filesystem to scan'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l kernel-log -r -d 'Kernel log to search'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l kernel-release -x -d 'Judge as if running this release'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l prometheus -r -F -d 'Also write node_exporter textfile metrics'
complete -c vmcsum -n "__fish_seen_subcommand_from audit" -l probe -d 'Measure O_DIRECT on each btrfs and use that'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a set -d 'Make files NOCOW or checksummed for real'
complete -c vmcsum -n "__fish_seen_subcommand_from set" -F
complete -c vmcsum -n "__fish_seen_subcommand_from set" -l nocow -d 'No copy-on-write, no data checksums'
complete -c vmcsum -n "__fish_seen_subcommand_from set" -l cow -d 'Copy-on-write with data checksums'
complete -c vmcsum -n "__fish_seen_subcommand_from set" -s r -l recursive -d 'Also convert everything inside directories'
complete -c vmcsum -n "__fish_seen_subcommand_from set" -s n -l dry-run -d 'Print the plan and change nothing'
complete -c vmcsum -n "__fish_seen_subcommand_from set" -l proc -r -d 'proc filesystem to scan for users of the files'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a probe -d 'Measure whether O_DIRECT writes are direct or buffered'
complete -c vmcsum -n "__fish_seen_subcommand_from probe" -F
complete -c vmcsum -n "__fish_seen_subcommand_from probe" -l method -x -a 'auto tracefs race' -d 'How to measure'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a bench -d 'Measure O_DIRECT throughput and CPU, checksummed vs NOCOW'
complete -c vmcsum -n "__fish_seen_subcommand_from bench" -F
complete -c vmcsum -n "__fish_seen_subcommand_from bench" -l seconds -x -d 'Time budget of the whole benchmark'
complete -c vmcsum -n "__fish_seen_subcommand_from bench" -l runs -x -d 'Runs of each case'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a scrub -d 'Verify every copy of every sector; false mismatches vs media'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -F
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l limit-rate -x -d 'Read at most this many bytes per second'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l kernel-pass -x -a 'findings full none' -d 'What to read through the filesystem'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l no-kernel-pass -d 'Skip the read through the filesystem'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l reconfirm -d 'Read confirmed bad sectors through btrfs again'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l no-progress -d 'Never draw the progress bar'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l no-history -d 'Do not read the kernel log'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l history -d 'Only report checksum failures from the kernel log'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l kernel-log -r -d 'Kernel log of this boot (/dev/kmsg or a file)'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l journal-dir -r -d 'Journal directory or file of earlier boots'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l libvirt-dir -r -d 'libvirt configuration directory'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l libvirt-run-dir -r -d 'libvirt runtime directory'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l pve-dir -r -d 'Proxmox configuration directory'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l kernel-release -x -d 'Classify as if running this kernel release'
complete -c vmcsum -n "__fish_seen_subcommand_from scrub" -l prometheus -r -F -d 'Also write node_exporter textfile metrics'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a repair -d 'Make false checksum mismatches readable again, with a backup'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -F
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l from -r -d 'Repair the bad sectors of a saved scrub JSON document'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l prefer-mirror -x -a '1 2 3 4' -d 'For sectors no copy matches, write back this copy'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l include-undetermined -d 'Also rewrite sectors the evidence cannot classify'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l then-nocow -d 'Afterwards convert the image to NOCOW where worthwhile'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l backup-dir -r -d 'Where backups go'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l undo -r -d 'Write the bytes saved in this backup back'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l force -d 'With --undo: restore even if the file changed'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l limit-rate -x -d 'Read and write at most this many bytes per second'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l no-progress -d 'Never draw the progress bar'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -s n -l dry-run -d 'Show what would be done and write nothing'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l proc -r -d 'proc filesystem to scan for users of the images'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a record -d 'Record the running kernel and each btrfs generation'
complete -c vmcsum -n "__fish_seen_subcommand_from record" -F
complete -c vmcsum -n "__fish_seen_subcommand_from record" -l source -x -a 'boot shutdown run' -d 'Why the entry is made'
complete -c vmcsum -n "__fish_seen_subcommand_from record" -l kernel-release -x -d 'Record this release instead of uname -r'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l libvirt-dir -r -d 'libvirt configuration directory'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l libvirt-run-dir -r -d 'libvirt runtime directory'
complete -c vmcsum -n "__fish_seen_subcommand_from repair" -l pve-dir -r -d 'Proxmox configuration directory'
