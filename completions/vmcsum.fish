# fish completion for vmcsum(8)
set -l commands show

complete -c vmcsum -f
complete -c vmcsum -l json -d 'Print one JSON document on stdout'
complete -c vmcsum -l color -x -a 'auto always never' -d 'Colour the output'
complete -c vmcsum -s v -l verbose -d 'Say more'
complete -c vmcsum -s q -l quiet -d 'Print no warnings'
complete -c vmcsum -l version -d 'Print the version'
complete -c vmcsum -s h -l help -d 'Print help'

complete -c vmcsum -n "not __fish_seen_subcommand_from $commands" -a show -d 'Show NOCOW, NODATASUM, checksum type, profile and extents'
complete -c vmcsum -n "__fish_seen_subcommand_from show" -F
