# bash completion for vmcsum(8)                                  -*- shell-script -*-
_vmcsum()
{
    local cur prev words cword split
    # -s: "--opt=value" is split, so --json=<TAB> and --color=<TAB> complete their values.
    _init_completion -s || return

    local commands="show audit set probe bench scrub repair record"
    local global_opts="--json --json= --color --verbose -v --quiet -q --output -o --no-headings --bytes --state-dir --version --help -h"

    if [[ $prev == --json ]]; then
        if $split; then
            COMPREPLY=($(compgen -W 'pretty short' -- "$cur"))
            return
        fi
    fi

    case $prev in
        --color)
            COMPREPLY=($(compgen -W 'auto always never' -- "$cur"))
            return
            ;;
        --libvirt-dir|--libvirt-run-dir|--pve-dir|--proc|--journal-dir)
            _filedir -d
            return
            ;;
        --kernel-log)
            _filedir
            return
            ;;
        --kernel-release)
            return
            ;;
        --source)
            COMPREPLY=($(compgen -W 'boot shutdown run' -- "$cur"))
            return
            ;;
        --method)
            COMPREPLY=($(compgen -W 'auto tracefs race' -- "$cur"))
            return
            ;;
        --kernel-pass)
            COMPREPLY=($(compgen -W 'findings full none' -- "$cur"))
            return
            ;;
        --output|-o)
            return
            ;;
        --seconds|--runs)
            return
            ;;
        --limit-rate|--prefer-mirror)
            return
            ;;
        --from|--undo)
            _filedir
            return
            ;;
        --backup-dir|--state-dir)
            _filedir -d
            return
            ;;
    esac

    local cmd="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            show|audit|set|probe|bench|scrub|repair|record) cmd=${words[i]}; break ;;
        esac
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    case $cmd in
        probe)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --method" -- "$cur"))
            else
                _filedir
            fi
            ;;
        bench)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --seconds --runs" -- "$cur"))
            else
                _filedir
            fi
            ;;
        scrub)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --limit-rate --kernel-pass --no-kernel-pass --reconfirm --no-progress --no-history --history --kernel-log --journal-dir --libvirt-dir --libvirt-run-dir --pve-dir --kernel-release --prometheus" -- "$cur"))
            else
                _filedir
            fi
            ;;
        repair)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --from --prefer-mirror --include-undetermined --then-nocow --backup-dir --undo --force --limit-rate --no-progress --dry-run -n --proc --libvirt-dir --libvirt-run-dir --pve-dir" -- "$cur"))
            else
                _filedir
            fi
            ;;
        record)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --source --kernel-release" -- "$cur"))
            else
                _filedir -d
            fi
            ;;
        show)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
            else
                _filedir
            fi
            ;;
        set)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --nocow --cow --recursive -r --dry-run -n --proc" -- "$cur"))
            else
                _filedir
            fi
            ;;
        audit)
            if [[ $cur == -* ]]; then
                COMPREPLY=($(compgen -W "$global_opts --libvirt-dir --libvirt-run-dir --pve-dir --proc --kernel-log --kernel-release --probe --prometheus" -- "$cur"))
            else
                _filedir
            fi
            ;;
    esac
} && complete -F _vmcsum vmcsum
