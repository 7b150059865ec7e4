
golden-2\{"type":"update_node","name":"n1","availability":"drain","add_labels":[],"remove_labels":[]}